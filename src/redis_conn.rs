//! One Redis or a Redis Cluster: the connections every part of the service uses.
//!
//! With `redis.cluster_nodes` set, every part talks to Redis Cluster through redis-rs'
//! cluster client, which routes each command by its key's slot, follows `MOVED`/`ASK`, and
//! finds a promoted replica after a failover by itself; otherwise to the one server at
//! `redis.url`. Both hand out a [`RedisConn`], which implements redis-rs' `ConnectionLike`,
//! so every script, pipeline and command is written once for both. What makes that valid
//! on a cluster is the key layout (`crate::gate::KeySpace`): every key one call touches
//! shares one hash tag (`{a:<id>}` for an activity, `{sweeper}` for the sweeper lock), so
//! no call crosses slots.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use redis::aio::{
    ConnectionLike, ConnectionManager, ConnectionManagerConfig, MultiplexedConnection,
};
use redis::cluster::ClusterClient;
use redis::cluster_async::ClusterConnection;
use redis::{AsyncConnectionConfig, Cmd, Pipeline, RedisFuture, RedisResult, Value};

use crate::configuration::RedisSettings;

/// Where the service's Redis is: one server, or a cluster (its seed nodes).
#[derive(Clone)]
pub enum RedisClient {
    Single(redis::Client),
    Cluster(Arc<[redis::ConnectionInfo]>),
}

/// How long a connection to a node may take to open.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// A connection to the service's Redis, cheap to clone (clones share one connection).
#[derive(Clone)]
pub enum RedisConn {
    /// One server, reconnecting by itself (the request path's shared connection).
    Managed(ConnectionManager),
    /// One server, a connection of its own (blocking stream reads hold it).
    Multiplexed(MultiplexedConnection),
    /// A cluster: one connection per node, routed by slot, renewed after a timeout.
    Cluster(ClusterConn),
}

impl RedisClient {
    /// The client the settings describe (no connection is made yet).
    pub fn open(settings: &RedisSettings) -> RedisResult<Self> {
        Ok(if settings.cluster_nodes.is_empty() {
            Self::Single(redis::Client::open(settings.url.as_str())?)
        } else {
            let nodes = settings
                .cluster_nodes
                .iter()
                .map(|n| redis::IntoConnectionInfo::into_connection_info(n.as_str()))
                .collect::<RedisResult<Arc<[_]>>>()?;
            // Checks the rest of the configuration once, here, rather than at each connect.
            cluster_client(&nodes, Duration::from_secs(2))?;
            Self::Cluster(nodes)
        })
    }

    /// Whether this is a cluster.
    pub fn is_cluster(&self) -> bool {
        matches!(self, Self::Cluster(_))
    }

    /// The shared connection of the request path: reconnects by itself, 2 s timeouts.
    pub async fn shared(&self) -> RedisResult<RedisConn> {
        self.own(Duration::from_secs(2)).await
    }

    /// One plain client per node to subscribe through, tried in turn: classic pub/sub is
    /// cluster-wide (a `PUBLISH` on any node reaches subscribers on every node), so one
    /// node at a time is enough.
    pub fn pubsub_clients(&self, settings: &RedisSettings) -> RedisResult<Vec<redis::Client>> {
        match self {
            Self::Single(client) => Ok(vec![client.clone()]),
            Self::Cluster(_) => settings
                .cluster_nodes
                .iter()
                .map(|u| redis::Client::open(u.as_str()))
                .collect(),
        }
    }

    /// A connection of its own that reconnects by itself, with the given response timeout:
    /// for commands that may block it (`WAIT`) and must not hold up the shared one.
    pub async fn own(&self, response_timeout: Duration) -> RedisResult<RedisConn> {
        match self {
            Self::Single(client) => {
                let config = ConnectionManagerConfig::new()
                    .set_connection_timeout(Some(CONNECT_TIMEOUT))
                    .set_response_timeout(Some(response_timeout))
                    .set_number_of_retries(2);
                Ok(RedisConn::Managed(
                    ConnectionManager::new_with_config(client.clone(), config).await?,
                ))
            }
            Self::Cluster(nodes) => Ok(RedisConn::Cluster(
                ClusterConn::connect(cluster_client(nodes, response_timeout)?, response_timeout)
                    .await?,
            )),
        }
    }

    /// A connection of its own, without a response timeout on one server: a blocking
    /// `XREADGROUP` holds its socket, so a reader must not share it with anything else.
    pub async fn dedicated(&self) -> RedisResult<RedisConn> {
        match self {
            Self::Single(client) => {
                let config = AsyncConnectionConfig::new()
                    .set_connection_timeout(Some(CONNECT_TIMEOUT))
                    .set_response_timeout(None);
                Ok(RedisConn::Multiplexed(
                    client
                        .get_multiplexed_async_connection_with_config(&config)
                        .await?,
                ))
            }
            // On a cluster the writer's reads do not block (one command may not span the
            // streams' slots), so a normal timeout applies: a hung node is given up on.
            Self::Cluster(_) => self.own(Duration::from_secs(10)).await,
        }
    }
}

impl RedisConn {
    /// Sends `pipeline` to the master of `key`'s slot, all of it on one connection, in
    /// order (a `WAIT` in it then follows the commands before it on that connection).
    pub async fn pipeline_on(
        &mut self,
        key: &str,
        pipeline: &redis::Pipeline,
    ) -> RedisResult<Vec<Value>> {
        match self {
            Self::Cluster(c) => {
                use redis::cluster_routing::{Route, SingleNodeRoutingInfo, Slot, SlotAddr};
                let route = Route::with_slot(Slot::for_key(key), SlotAddr::Master);
                let route = SingleNodeRoutingInfo::SpecificNode(route);
                let pipeline = pipeline.clone();
                c.run(|mut conn| async move {
                    let len = pipeline.len();
                    conn.route_pipeline(pipeline, 0, len, route).await
                })
                .await
            }
            other => pipeline.query_async(other).await,
        }
    }
}

impl ConnectionLike for RedisConn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Self::Managed(c) => c.req_packed_command(cmd),
            Self::Multiplexed(c) => c.req_packed_command(cmd),
            Self::Cluster(c) => {
                let (c, cmd) = (c.clone(), cmd.clone());
                Box::pin(async move {
                    c.run(|mut conn| async move { conn.req_packed_command(&cmd).await })
                        .await
                })
            }
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Self::Managed(c) => c.req_packed_commands(pipeline, offset, count),
            Self::Multiplexed(c) => c.req_packed_commands(pipeline, offset, count),
            Self::Cluster(c) => {
                let (c, pipeline) = (c.clone(), pipeline.clone());
                Box::pin(async move {
                    c.run(|mut conn| async move {
                        conn.req_packed_commands(&pipeline, offset, count).await
                    })
                    .await
                })
            }
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Self::Managed(c) => c.get_db(),
            Self::Multiplexed(c) => c.get_db(),
            Self::Cluster(c) => c.current().get_db(),
        }
    }
}

/// A cluster connection that is replaced by a fresh one after a response timed out.
///
/// redis-rs' cluster client re-reads the slot map when a node refuses a connection or
/// redirects (`MOVED`), which covers a master that died. A master that *hangs* (stopped,
/// or a network black hole) does neither: its socket stays open, every command to it times
/// out, and the client keeps sending there after its replica was promoted, so everything
/// whose key lives on that master fails until it wakes up — the instance lease included,
/// which stops the whole process. After a timeout, a new connection is built in the
/// background (at most once per [`RENEW_EVERY`]): it reads the slot map afresh, cannot
/// connect to the hung node, and so routes its slots to the promoted replica once the
/// cluster has failed over. Requests in flight finish on the old connection.
///
/// Each request runs as a task of its own, so it lives to its answer or its timeout even
/// when its caller gives up first (a client that hangs up drops its HTTP handler): were the
/// timeouts only seen by callers, clients quicker to give up than the response timeout
/// would keep a hung master routed for good.
#[derive(Clone)]
pub struct ClusterConn {
    shared: Arc<ClusterShared>,
}

/// How soon after a renewal (or the first connect) a cluster connection may be renewed again;
/// after a failed attempt, the next timeout tries at once.
pub const RENEW_EVERY: Duration = Duration::from_secs(3);

struct ClusterShared {
    client: ClusterClient,
    response_timeout: Duration,
    current: RwLock<ClusterConnection>,
    renewing: AtomicBool,
    renewed: Mutex<Instant>,
}

impl ClusterConn {
    async fn connect(client: ClusterClient, response_timeout: Duration) -> RedisResult<Self> {
        let conn = open_cluster(&client, response_timeout).await?;
        Ok(Self {
            shared: Arc::new(ClusterShared {
                client,
                response_timeout,
                current: RwLock::new(conn),
                renewing: AtomicBool::new(false),
                renewed: Mutex::new(Instant::now()),
            }),
        })
    }

    /// The connection in use now (a clone shares it).
    fn current(&self) -> ClusterConnection {
        self.shared
            .current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Runs one request on the connection in use now, as a task of its own; a timeout
    /// starts a renewal.
    async fn run<T, F, Fut>(&self, request: F) -> RedisResult<T>
    where
        T: Send + 'static,
        F: FnOnce(ClusterConnection) -> Fut,
        Fut: std::future::Future<Output = RedisResult<T>> + Send + 'static,
    {
        let this = self.clone();
        let reply = request(self.current());
        tokio::spawn(async move {
            let reply = reply.await;
            if matches!(&reply, Err(e) if e.is_timeout()) {
                this.renew_soon();
            }
            reply
        })
        .await
        .unwrap_or_else(|e| {
            Err(redis::RedisError::from((
                redis::ErrorKind::Client,
                "a Redis Cluster request's task failed",
                e.to_string(),
            )))
        })
    }

    fn renew_soon(&self) {
        let shared = &self.shared;
        {
            let renewed = shared.renewed.lock().unwrap_or_else(|e| e.into_inner());
            if renewed.elapsed() < RENEW_EVERY {
                return;
            }
        }
        if shared.renewing.swap(true, Ordering::AcqRel) {
            return;
        }
        let shared = self.shared.clone();
        tokio::spawn(async move {
            match open_cluster(&shared.client, shared.response_timeout).await {
                Ok(conn) => {
                    *shared.current.write().unwrap_or_else(|e| e.into_inner()) = conn;
                    *shared.renewed.lock().unwrap_or_else(|e| e.into_inner()) = Instant::now();
                    metrics::counter!("seckill_redis_cluster_renewals_total").increment(1);
                    tracing::warn!("a Redis Cluster node timed out: connection renewed");
                }
                // The next timeout tries again at once: the cluster may have failed over
                // meanwhile.
                Err(e) => tracing::warn!(error = %e, "Redis Cluster connection not renewed"),
            }
            shared.renewing.store(false, Ordering::Release);
        });
    }
}

/// A cluster client whose every request (retries and redirects included) gives up after
/// `response_timeout`. redis-rs fixes that overall bound when the client is built, so a
/// connection with another timeout needs a client of its own.
fn cluster_client(
    nodes: &[redis::ConnectionInfo],
    response_timeout: Duration,
) -> RedisResult<ClusterClient> {
    ClusterClient::builder(nodes.iter().cloned())
        .connection_timeout(CONNECT_TIMEOUT)
        .response_timeout(response_timeout)
        .overall_response_timeout(Some(response_timeout))
        .build()
}

/// Opens a cluster connection: reads the slot map, connects to every master. Bounded as a
/// whole (redis-rs bounds each step, not their sum), so a reconnect cannot hang its caller
/// for ever.
async fn open_cluster(
    client: &ClusterClient,
    response_timeout: Duration,
) -> RedisResult<ClusterConnection> {
    let config = redis::cluster::ClusterConfig::new()
        .set_connection_timeout(CONNECT_TIMEOUT)
        .set_response_timeout(response_timeout);
    // Generous: reading the slot map while a master hangs waits for it to time out, once
    // or more (measured: a bound of one connect and one response timeout failed every
    // renewal during `loadtest/failover --hang`, and the shard stayed down until the node
    // resumed).
    let bound = 3 * (CONNECT_TIMEOUT + response_timeout);
    tokio::time::timeout(bound, client.get_async_connection_with_config(config))
        .await
        .unwrap_or_else(|_| {
            Err(redis::RedisError::from(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "opening a Redis Cluster connection timed out",
            )))
        })
}
