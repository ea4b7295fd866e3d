# Build and run image for `seckill`. Used by docker-compose.yml.
FROM rust:1.95-bookworm AS build
WORKDIR /src

# 1. The dependencies, in a layer of their own: only the manifests of the workspace (every
#    member of [workspace] members), Cargo.lock and stub sources. This layer is rebuilt when a
#    manifest or the lock file changes, not when the code does.
COPY Cargo.toml Cargo.lock ./
COPY migrations/Cargo.toml migrations/
COPY loadtest/goose/Cargo.toml loadtest/goose/
COPY scripts/docker-stubs.sh scripts/
RUN scripts/docker-stubs.sh \
 && cargo build --release --locked --bin seckill \
 && rm -rf src migrations/src loadtest/goose/src

# 2. The service itself. The sources are touched: their times come from the build context and
#    may be older than the stubs' build, which cargo would take for "nothing changed".
#    lua/ and config/default.toml are compiled into the binary.
COPY src src
COPY lua lua
COPY config config
COPY migrations/src migrations/src
COPY loadtest/goose/src loadtest/goose/src
RUN find src lua config migrations/src loadtest/goose/src -type f -exec touch {} + \
 && cargo build --release --locked --bin seckill

FROM debian:bookworm-slim
# curl: the health check of docker-compose.yml (GET /readyz)
RUN apt-get update \
 && apt-get install -y --no-install-recommends curl ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 seckill
COPY --from=build /src/target/release/seckill /usr/local/bin/seckill
COPY config /etc/seckill/config
WORKDIR /etc/seckill
USER seckill
EXPOSE 8080
ENTRYPOINT ["seckill"]
CMD ["serve"]
