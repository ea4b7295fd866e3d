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

use std::time::Duration;

use redis::aio::{
    ConnectionLike, ConnectionManager, ConnectionManagerConfig, MultiplexedConnection,
};
use redis::cluster::ClusterClient;
use redis::cluster_async::ClusterConnection;
use redis::{AsyncConnectionConfig, Cmd, Pipeline, RedisFuture, RedisResult, Value};

use crate::configuration::RedisSettings;

/// Where the service's Redis is: one server, or a cluster.
#[derive(Clone)]
pub enum RedisClient {
    Single(redis::Client),
    Cluster(Box<ClusterClient>),
}

/// A connection to the service's Redis, cheap to clone (clones share one connection).
#[derive(Clone)]
pub enum RedisConn {
    /// One server, reconnecting by itself (the request path's shared connection).
    Managed(ConnectionManager),
    /// One server, a connection of its own (blocking stream reads hold it).
    Multiplexed(MultiplexedConnection),
    /// A cluster: one connection per node, routed by slot.
    Cluster(ClusterConnection),
}

impl RedisClient {
    /// The client the settings describe (no connection is made yet).
    pub fn open(settings: &RedisSettings) -> RedisResult<Self> {
        Ok(if settings.cluster_nodes.is_empty() {
            Self::Single(redis::Client::open(settings.url.as_str())?)
        } else {
            Self::Cluster(Box::new(
                ClusterClient::builder(settings.cluster_nodes.iter().map(String::as_str))
                    .connection_timeout(Duration::from_secs(2))
                    .response_timeout(Duration::from_secs(2))
                    .build()?,
            ))
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
                    .set_connection_timeout(Some(Duration::from_secs(2)))
                    .set_response_timeout(Some(response_timeout))
                    .set_number_of_retries(2);
                Ok(RedisConn::Managed(
                    ConnectionManager::new_with_config(client.clone(), config).await?,
                ))
            }
            Self::Cluster(client) => {
                let config = redis::cluster::ClusterConfig::new()
                    .set_connection_timeout(Duration::from_secs(2))
                    .set_response_timeout(response_timeout);
                Ok(RedisConn::Cluster(
                    client.get_async_connection_with_config(config).await?,
                ))
            }
        }
    }

    /// A connection of its own, without a response timeout on one server: a blocking
    /// `XREADGROUP` holds its socket, so a reader must not share it with anything else.
    pub async fn dedicated(&self) -> RedisResult<RedisConn> {
        match self {
            Self::Single(client) => {
                let config = AsyncConnectionConfig::new()
                    .set_connection_timeout(Some(Duration::from_secs(2)))
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
                c.route_pipeline(
                    pipeline.clone(),
                    0,
                    pipeline.len(),
                    SingleNodeRoutingInfo::SpecificNode(route),
                )
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
            Self::Cluster(c) => c.req_packed_command(cmd),
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
            Self::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Self::Managed(c) => c.get_db(),
            Self::Multiplexed(c) => c.get_db(),
            Self::Cluster(c) => c.get_db(),
        }
    }
}
