# Build and run image for `seckill`. Used by docker-compose.yml.
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin seckill

FROM debian:bookworm-slim
RUN useradd --system --uid 10001 seckill
COPY --from=build /src/target/release/seckill /usr/local/bin/seckill
COPY config /etc/seckill/config
WORKDIR /etc/seckill
USER seckill
EXPOSE 8080
ENTRYPOINT ["seckill"]
CMD ["serve"]
