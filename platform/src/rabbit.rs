//! RabbitMQ implementation of the [`EventBus`] seam (lapin).
//!
//! Topology, declared in code at start-up and on every reconnect:
//! - `jobs.events`: durable topic exchange; routing key = event type (`conversion.succeeded`, ...).
//! - one durable queue per consuming service, bound to the event types it needs, dead-lettering
//!   into `jobs.dead-letter` (a durable fanout exchange feeding the `jobs.dead-letter` queue);
//! - per service and delay, a retry queue `<queue>.retry.<ms>ms` with that message TTL, which
//!   dead-letters expired messages back into the service's queue: delayed redelivery without plugins;
//! - per service, a parking queue `<queue>.parked` for events a newer build wrote (a newer schema
//!   version of a type, or a type this build does not know): kept as they came, with the reason in
//!   an `x-parked-reason` header, until an operator re-drives them ([`RabbitBus::redrive_parked`])
//!   once a build that reads them runs. In a rolling deploy new producers run beside old consumers;
//!   parking is what makes that lose nothing.
//!
//! Messages are persistent and published with confirms; consumers ack manually with a prefetch.
//!
//! Poison messages. A subscription with a delivery limit gets a *quorum* queue with
//! `x-delivery-limit`: the broker counts, durably and across restarts and replicas, the deliveries
//! that came back without an ack or a reject (the consumer was killed, ran out of memory, aborted,
//! or lost its channel), and past the limit dead-letters the message with reason `delivery_limit`
//! (at-least-once dead-lettering, so that hand-over loses nothing either). Beside the dead-letter
//! queue, which keeps every dead letter for operators, such a subscription's queue `<queue>` has a
//! watch queue `<queue>.abandoned` bound to the same fanout exchange: its consumers take the dead
//! letters that died in `<queue>` of `delivery_limit` and call [`EventHandler::abandoned`], which
//! ends the job with a failure; the other copies are simply acknowledged there.
//!
//! Migration. A queue's type and arguments are fixed when it is created: declaring an existing
//! classic queue as a quorum queue fails with 406 PRECONDITION_FAILED (and closes the channel).
//! So the quorum queue has a new name, and the subscription names the classic queue it replaces
//! ([`Subscription::replaces_queue`]). On every (re)connect a consumer, after declaring the new
//! queue and its bindings, migrates what is left of the old one, idempotently: it unbinds the old
//! queue (new events then reach only the new one; an event published in between reaches both, a
//! duplicate the handlers tolerate), moves the messages of the old queue, its retry queues and its
//! parking queue into the new ones (each confirmed before it is acked: nothing is lost), then
//! deletes them if empty and unused. Several replicas may do it at once: each message is taken by
//! one, and a queue another replica deleted first counts as done. A queue still consumed by a
//! replica of the old build (rolling deploy), or that got messages meanwhile, stays until the next
//! start. The same holds for a changed delivery limit: the arguments of an existing queue cannot
//! change, so a new limit needs a new queue name (or an operator policy).

use crate::bus::{BusError, Delivered, EventBus, EventHandler, Outcome, Subscription};
use async_trait::async_trait;
use backon::BackoffBuilder;
use contracts::Envelope;
use contracts::events::DecodeError;
use futures::StreamExt;
use lapin::{
    BasicProperties, Channel, Connection, ConnectionProperties, ExchangeKind,
    message::Delivery,
    options::{
        BasicAckOptions, BasicConsumeOptions, BasicGetOptions, BasicNackOptions,
        BasicPublishOptions, BasicQosOptions, ConfirmSelectOptions, ExchangeDeclareOptions,
        QueueBindOptions, QueueDeclareOptions, QueueDeleteOptions,
    },
    protocol::{AMQPErrorKind, AMQPSoftError},
    types::{AMQPValue, FieldTable, ShortString},
};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Mutex;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

pub const EVENTS_EXCHANGE: &str = "jobs.events";
pub const DEAD_LETTER_EXCHANGE: &str = "jobs.dead-letter";
pub const DEAD_LETTER_QUEUE: &str = "jobs.dead-letter";
/// Header carrying the 1-based attempt number of a delivery.
pub const ATTEMPT_HEADER: &str = "x-attempt";
/// Header carrying the W3C trace context.
pub const TRACEPARENT_HEADER: &str = "traceparent";
/// Header a parked message carries: why this build could not read it.
pub const PARKED_REASON_HEADER: &str = "x-parked-reason";
/// How often the automatic re-drive ([`crate::bus::AutoRedrive`]) moved a message back out of the
/// dead-letter queue; carried through retries so the bound holds.
pub const REDRIVEN_HEADER: &str = "x-redriven";

const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const CONFIRM_TIMEOUT: Duration = Duration::from_secs(10);

/// Name of the retry queue holding deliveries of `queue` for `delay`.
pub fn retry_queue_name(queue: &str, delay: Duration) -> String {
    format!("{queue}.retry.{}ms", delay.as_millis())
}

/// Name of the queue where `queue`'s consumers park the events a newer build wrote.
pub fn parked_queue_name(queue: &str) -> String {
    format!("{queue}.parked")
}

/// Name of the queue where `queue`'s consumers watch for the messages the broker gave up past
/// their delivery limit (a copy of every dead letter, bound to the dead-letter exchange).
pub fn abandoned_queue_name(queue: &str) -> String {
    format!("{queue}.abandoned")
}

/// The reason RabbitMQ gives a message dead-lettered past its queue's delivery limit.
pub const DELIVERY_LIMIT_REASON: &str = "delivery_limit";

/// Names of everything the bus declares. Production uses [`Topology::default`]; tests use
/// [`Topology::isolated`] so parallel tests on one broker never see each other's messages.
#[derive(Debug, Clone)]
pub struct Topology {
    pub events_exchange: String,
    pub dead_letter_exchange: String,
    pub dead_letter_queue: String,
    /// Prefix of every service queue name.
    pub queue_prefix: String,
    /// When set, queues and exchanges vanish after this long unused (test topologies).
    pub expires: Option<Duration>,
}

impl Default for Topology {
    fn default() -> Self {
        Self {
            events_exchange: EVENTS_EXCHANGE.into(),
            dead_letter_exchange: DEAD_LETTER_EXCHANGE.into(),
            dead_letter_queue: DEAD_LETTER_QUEUE.into(),
            queue_prefix: String::new(),
            expires: None,
        }
    }
}

impl Topology {
    /// Every name prefixed with `namespace.`, removed by the broker a minute after last use.
    pub fn isolated(namespace: &str) -> Self {
        Self {
            events_exchange: format!("{namespace}.{EVENTS_EXCHANGE}"),
            dead_letter_exchange: format!("{namespace}.{DEAD_LETTER_EXCHANGE}"),
            dead_letter_queue: format!("{namespace}.{DEAD_LETTER_QUEUE}"),
            queue_prefix: format!("{namespace}."),
            expires: Some(Duration::from_secs(60)),
        }
    }

    /// Full name of a service queue.
    pub fn queue(&self, name: &str) -> String {
        format!("{}{name}", self.queue_prefix)
    }

    fn queue_arguments(&self) -> FieldTable {
        let mut arguments = FieldTable::default();
        if let Some(expires) = self.expires {
            arguments.insert(
                "x-expires".into(),
                AMQPValue::LongLongInt(expires.as_millis() as i64),
            );
        }
        arguments
    }

    /// Arguments of a service queue: dead-lettering into the dead-letter exchange, and with a
    /// delivery limit a quorum queue that counts deaths (see the module documentation).
    fn service_queue_arguments(&self, delivery_limit: Option<u32>) -> FieldTable {
        let mut arguments = self.queue_arguments();
        arguments.insert(
            "x-dead-letter-exchange".into(),
            AMQPValue::LongString(self.dead_letter_exchange.as_str().into()),
        );
        if let Some(limit) = delivery_limit {
            arguments.insert(
                "x-queue-type".into(),
                AMQPValue::LongString("quorum".into()),
            );
            arguments.insert(
                "x-delivery-limit".into(),
                AMQPValue::LongLongInt(limit.into()),
            );
            // At-most-once (the default) would drop a dead letter the broker fails to hand over;
            // at-least-once needs publishes refused rather than old messages dropped on overflow.
            arguments.insert(
                "x-dead-letter-strategy".into(),
                AMQPValue::LongString("at-least-once".into()),
            );
            arguments.insert(
                "x-overflow".into(),
                AMQPValue::LongString("reject-publish".into()),
            );
        }
        arguments
    }

    fn exchange_options(&self) -> ExchangeDeclareOptions {
        ExchangeDeclareOptions {
            durable: true,
            auto_delete: self.expires.is_some(),
            ..ExchangeDeclareOptions::default()
        }
    }
}

/// The frame size we offer the broker unless the URL sets `frame_max`. lapin keeps two buffers
/// of 32 frames per connection, so RabbitMQ's default 128 KiB frame costs 8 MiB of RAM per
/// connection; our events are a few hundred bytes, and larger messages are simply split.
pub const DEFAULT_FRAME_MAX: u32 = 16 * 1024;

/// Parses the AMQP URL (the error never repeats it: it may hold a password) and applies
/// [`DEFAULT_FRAME_MAX`] unless the URL chose a frame size.
fn connection_uri(url: &str) -> Result<lapin::uri::AMQPUri, BusError> {
    let mut uri: lapin::uri::AMQPUri = url
        .parse()
        .map_err(|e| BusError::Unavailable(format!("invalid AMQP URL: {e}")))?;
    uri.query.frame_max.get_or_insert(DEFAULT_FRAME_MAX);
    Ok(uri)
}

pub struct RabbitBus {
    url: crate::SecretUrl,
    topology: Topology,
    /// Publishing connection and confirm-mode channel, opened lazily and replaced when broken.
    publisher: Mutex<Option<(Connection, Channel)>>,
}

impl RabbitBus {
    /// A bus for `url`. Connects lazily: constructing it never fails on an absent broker.
    pub fn new(url: impl Into<crate::SecretUrl>) -> Self {
        Self {
            url: url.into(),
            topology: Topology::default(),
            publisher: Mutex::new(None),
        }
    }

    pub fn with_topology(mut self, topology: Topology) -> Self {
        self.topology = topology;
        self
    }

    pub fn topology(&self) -> &Topology {
        &self.topology
    }

    /// Opens a connection (for tests and tools that inspect queues).
    pub async fn open_connection(&self) -> Result<Connection, BusError> {
        self.connect().await
    }

    async fn connect(&self) -> Result<Connection, BusError> {
        let uri = connection_uri(self.url.expose())?;
        let properties = ConnectionProperties::default();
        match tokio::time::timeout(CONNECT_TIMEOUT, Connection::connect_uri(uri, properties)).await
        {
            Ok(Ok(connection)) => Ok(connection),
            Ok(Err(e)) => Err(BusError::Unavailable(e.to_string())),
            Err(_) => Err(BusError::Unavailable("connection timed out".into())),
        }
    }

    async fn confirm_channel(&self, connection: &Connection) -> Result<Channel, BusError> {
        let channel = connection.create_channel().await.map_err(unavailable)?;
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await
            .map_err(unavailable)?;
        declare_exchanges(&channel, &self.topology).await?;
        Ok(channel)
    }

    /// The cached publishing channel, reconnecting when it is missing or broken.
    async fn publishing_channel(
        &self,
        slot: &mut Option<(Connection, Channel)>,
    ) -> Result<Channel, BusError> {
        if let Some((connection, channel)) = slot.as_ref()
            && connection.status().connected()
            && channel.status().connected()
        {
            return Ok(channel.clone());
        }
        *slot = None;
        let connection = self.connect().await?;
        let channel = self.confirm_channel(&connection).await?;
        *slot = Some((connection, channel.clone()));
        Ok(channel)
    }

    /// Declares the dead-letter topology and `subscription`'s queue, bindings, retry queues and
    /// parking queue.
    pub async fn declare_subscription(
        &self,
        channel: &Channel,
        subscription: &Subscription,
    ) -> Result<(), BusError> {
        let topology = &self.topology;
        declare_exchanges(channel, topology).await?;
        let queue = topology.queue(&subscription.queue);
        channel
            .queue_declare(
                queue.as_str().into(),
                QueueDeclareOptions::durable(),
                topology.service_queue_arguments(subscription.delivery_limit),
            )
            .await
            .map_err(|e| BusError::Unavailable(format!("declaring queue {queue}: {e}")))?;
        for event_type in &subscription.event_types {
            channel
                .queue_bind(
                    queue.as_str().into(),
                    topology.events_exchange.as_str().into(),
                    event_type.as_str().into(),
                    QueueBindOptions::default(),
                    FieldTable::default(),
                )
                .await
                .map_err(unavailable)?;
        }
        for delay in &subscription.retry_delays {
            let mut arguments = topology.queue_arguments();
            arguments.insert(
                "x-message-ttl".into(),
                AMQPValue::LongLongInt(delay.as_millis() as i64),
            );
            arguments.insert(
                "x-dead-letter-exchange".into(),
                AMQPValue::LongString("".into()),
            );
            arguments.insert(
                "x-dead-letter-routing-key".into(),
                AMQPValue::LongString(queue.as_str().into()),
            );
            channel
                .queue_declare(
                    retry_queue_name(&queue, *delay).as_str().into(),
                    QueueDeclareOptions::durable(),
                    arguments,
                )
                .await
                .map_err(unavailable)?;
        }
        // Bound to nothing: only this service's consumers put messages there, one by one.
        channel
            .queue_declare(
                parked_queue_name(&queue).as_str().into(),
                QueueDeclareOptions::durable(),
                topology.queue_arguments(),
            )
            .await
            .map_err(unavailable)?;
        if subscription.delivery_limit.is_some() {
            let abandoned = abandoned_queue_name(&queue);
            channel
                .queue_declare(
                    abandoned.as_str().into(),
                    QueueDeclareOptions::durable(),
                    topology.queue_arguments(),
                )
                .await
                .map_err(unavailable)?;
            channel
                .queue_bind(
                    abandoned.as_str().into(),
                    topology.dead_letter_exchange.as_str().into(),
                    "".into(),
                    QueueBindOptions::default(),
                    FieldTable::default(),
                )
                .await
                .map_err(unavailable)?;
        }
        Ok(())
    }

    /// Migrates what is left of the queue `subscription` replaces into its queue (see the module
    /// documentation): unbind, move the messages of the old queue, its retry queues and parking
    /// queue, delete each once empty and unused. Returns how many messages moved. Idempotent; a
    /// queue that cannot be deleted yet is left for the next run.
    pub async fn migrate_replaced_queue(
        &self,
        subscription: &Subscription,
    ) -> Result<u64, BusError> {
        let Some(old) = &subscription.replaces_queue else {
            return Ok(0);
        };
        let topology = &self.topology;
        let (old, new) = (topology.queue(old), topology.queue(&subscription.queue));
        let connection = self.connect().await?;
        let result = async {
            if !queue_exists(&connection, &old).await? {
                return Ok(0);
            }
            tracing::warn!(%old, %new, "migrating the messages of a replaced queue");
            let channel = connection.create_channel().await.map_err(unavailable)?;
            for event_type in &subscription.event_types {
                channel
                    .queue_unbind(
                        old.as_str().into(),
                        topology.events_exchange.as_str().into(),
                        event_type.as_str().into(),
                        FieldTable::default(),
                    )
                    .await
                    .map_err(unavailable)?;
            }
            let _ = channel.close(200, "unbound".into()).await;
            // Retry queues first: what waits there expires into the old queue, moved after them.
            let mut sources: Vec<(String, String)> = subscription
                .retry_delays
                .iter()
                .map(|delay| (retry_queue_name(&old, *delay), new.clone()))
                .collect();
            sources.push((parked_queue_name(&old), parked_queue_name(&new)));
            sources.push((old.clone(), new.clone()));
            let mut moved = 0;
            for (source, target) in &sources {
                if !queue_exists(&connection, source).await? {
                    continue;
                }
                moved += self
                    .move_messages_from(SourceQueue::Existing, source, target, |delivery| {
                        Some(delivery.properties.clone())
                    })
                    .await?;
                delete_if_empty_and_unused(&connection, source).await;
            }
            tracing::warn!(%old, %new, moved, "replaced queue migrated");
            Ok(moved)
        }
        .await;
        let _ = connection.close(200, "migrated".into()).await;
        result
    }

    /// Moves every message parked by the consumers of service queue `queue` (its short name, as in
    /// [`Subscription::queue`]) back into that queue, once a build that reads them consumes it;
    /// returns how many were moved. Each message keeps its body and headers (less the parking
    /// reason) and is acknowledged in the parking queue only after the broker confirmed it in the
    /// service queue, so a failure half-way loses nothing and at worst repeats one delivery.
    ///
    /// The messages go straight to the service queue rather than through the exchange: other
    /// services bound to the event type handled it already. Only the messages parked when it
    /// starts are moved, so a consumer that still cannot read them and parks them again does not
    /// keep it going round.
    pub async fn redrive_parked(&self, queue: &str) -> Result<u64, BusError> {
        let queue = self.topology.queue(queue);
        let moved = self
            .move_messages_from(
                SourceQueue::Aside,
                &parked_queue_name(&queue),
                &queue,
                |delivery| {
                    Some(without_headers(
                        &delivery.properties,
                        &[PARKED_REASON_HEADER],
                    ))
                },
            )
            .await?;
        tracing::info!(%queue, moved, "parked events re-driven");
        Ok(moved)
    }

    /// Up to `limit` messages of the dead-letter queue, oldest first, as they are: peeked, not
    /// taken (closing the channel puts them back in order).
    pub async fn dead_letters(&self, limit: usize) -> Result<Vec<DeadLetter>, BusError> {
        let connection = self.connect().await?;
        let channel = connection.create_channel().await.map_err(unavailable)?;
        let waiting = self
            .declare_aside_queue(&channel, &self.topology.dead_letter_queue)
            .await?;
        let mut seen = Vec::new();
        let result = async {
            while seen.len() < limit.min(waiting as usize) {
                let Some(message) = channel
                    .basic_get(
                        self.topology.dead_letter_queue.as_str().into(),
                        BasicGetOptions::default(),
                    )
                    .await
                    .map_err(unavailable)?
                else {
                    break;
                };
                seen.push(DeadLetter::of(&message.delivery));
            }
            Ok::<(), BusError>(())
        }
        .await;
        let _ = channel.close(200, "peeked".into()).await;
        let _ = connection.close(200, "peeked".into()).await;
        result.map(|()| seen)
    }

    /// Moves the dead-lettered messages that died in `queue` (this service's) back into it, each
    /// with its attempts counted from 1 again; the other services' dead letters stay where they
    /// are. Returns how many moved.
    pub async fn redrive_dead_letters(&self, queue: &str) -> Result<u64, BusError> {
        let queue = self.topology.queue(queue);
        let moved = self
            .move_messages_from(
                SourceQueue::Aside,
                &self.topology.dead_letter_queue,
                &queue,
                |delivery| {
                    // Another service's dead letters are left where they are.
                    if DeadLetter::of(delivery).queue.as_deref() != Some(queue.as_str()) {
                        return None;
                    }
                    Some(revived(&delivery.properties, None))
                },
            )
            .await?;
        tracing::info!(%queue, moved, "dead letters re-driven");
        Ok(moved)
    }

    /// The automatic re-drive: moves the dead letters that died in `queue` at least
    /// `policy.cool_down` ago and were re-driven automatically fewer than `policy.max_redrives`
    /// times back into it, attempts counted from 1 again and [`REDRIVEN_HEADER`] one higher. The
    /// others stay for operators. Returns how many moved.
    pub async fn redrive_dead_letters_after(
        &self,
        queue: &str,
        policy: crate::bus::AutoRedrive,
    ) -> Result<u64, BusError> {
        let queue = self.topology.queue(queue);
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |since| since.as_secs());
        self.move_messages_from(
            SourceQueue::Aside,
            &self.topology.dead_letter_queue,
            &queue,
            |delivery| {
                let dead = DeadLetter::of(delivery);
                // A message the broker gave up past the delivery limit killed its consumer every
                // time: putting it back would only kill it again.
                if dead.queue.as_deref() != Some(queue.as_str())
                    || dead.reason.as_deref() == Some("delivery_limit")
                {
                    return None;
                }
                let redriven = header_u32(delivery, REDRIVEN_HEADER).unwrap_or(0);
                let cooling = died_at(delivery)
                    .is_some_and(|died| now.saturating_sub(died) < policy.cool_down.as_secs());
                if redriven >= policy.max_redrives || cooling {
                    return None;
                }
                Some(revived(&delivery.properties, Some(redriven + 1)))
            },
        )
        .await
    }

    /// Moves the messages waiting in `source` when it starts into `target`, one at a time: each
    /// is published with a confirm, then acked, so a failure loses nothing. `rewrite` gives the
    /// properties a message goes with, or `None` to leave it; left and interrupted messages are
    /// unacknowledged and return to `source` when the channel closes. Counting from the start
    /// keeps a consumer that parks or dead-letters the moved messages again from keeping it going.
    async fn move_messages_from(
        &self,
        kind: SourceQueue,
        source: &str,
        target: &str,
        rewrite: impl Fn(&Delivery) -> Option<BasicProperties>,
    ) -> Result<u64, BusError> {
        let connection = self.connect().await?;
        let channel = self.confirm_channel(&connection).await?;
        let result = async {
            // Passive: moving into a queue that does not exist would drop every message.
            channel
                .queue_declare(
                    target.into(),
                    QueueDeclareOptions {
                        passive: true,
                        ..QueueDeclareOptions::default()
                    },
                    FieldTable::default(),
                )
                .await
                .map_err(|e| BusError::Unavailable(format!("queue {target}: {e}")))?;
            let waiting = match kind {
                SourceQueue::Aside => self.declare_aside_queue(&channel, source).await?,
                SourceQueue::Existing => channel
                    .queue_declare(
                        source.into(),
                        QueueDeclareOptions {
                            passive: true,
                            ..QueueDeclareOptions::default()
                        },
                        FieldTable::default(),
                    )
                    .await
                    .map_err(|e| BusError::Unavailable(format!("queue {source}: {e}")))?
                    .message_count(),
            };
            let mut moved = 0u64;
            for _ in 0..waiting {
                let Some(message) = channel
                    .basic_get(source.into(), BasicGetOptions::default())
                    .await
                    .map_err(unavailable)?
                else {
                    break;
                };
                let delivery = message.delivery;
                let Some(properties) = rewrite(&delivery) else {
                    continue;
                };
                publish_confirmed(&channel, "", target, &delivery.data, properties, true).await?;
                delivery
                    .ack(BasicAckOptions::default())
                    .await
                    .map_err(unavailable)?;
                moved += 1;
            }
            Ok::<u64, BusError>(moved)
        }
        .await;
        let _ = channel.close(200, "moved".into()).await;
        let _ = connection.close(200, "moved".into()).await;
        result
    }

    /// Declares a queue where messages are set aside (a parking or the dead-letter queue;
    /// idempotent) and says how many wait in it.
    async fn declare_aside_queue(&self, channel: &Channel, name: &str) -> Result<u32, BusError> {
        Ok(channel
            .queue_declare(
                name.into(),
                QueueDeclareOptions::durable(),
                self.topology.queue_arguments(),
            )
            .await
            .map_err(unavailable)?
            .message_count())
    }

    /// One consuming session on one connection; returns when the connection breaks or on shutdown.
    async fn consume_once(
        &self,
        subscription: &Subscription,
        handler: &Arc<dyn EventHandler>,
        shutdown: &CancellationToken,
    ) -> Result<(), BusError> {
        let connection = self.connect().await?;
        let channel = connection.create_channel().await.map_err(unavailable)?;
        self.declare_subscription(&channel, subscription).await?;
        if let Err(e) = self.migrate_replaced_queue(subscription).await {
            // The old queue keeps its messages; the next (re)connect tries again.
            tracing::error!(queue = %subscription.queue, error = %e, "could not migrate the replaced queue yet");
        }
        let queue = self.topology.queue(&subscription.queue);
        channel
            .basic_qos(subscription.prefetch, BasicQosOptions::default())
            .await
            .map_err(unavailable)?;
        // Retries are republished on their own confirm channel so a retry is safely stored
        // before the original delivery is acknowledged.
        let retry_channel = self.confirm_channel(&connection).await?;
        let consumer = channel
            .basic_consume(
                queue.as_str().into(),
                ShortString::from(format!("{queue}-{}", uuid::Uuid::now_v7())),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await
            .map_err(unavailable)?;
        tracing::info!(%queue, prefetch = subscription.prefetch, "consuming");

        // The session ends when either consumer's stream ends (a lost channel) or on shutdown.
        let session = shutdown.child_token();
        let broken = std::sync::Mutex::new(None::<String>);
        let watch = async {
            if let Some(limit) = subscription.delivery_limit {
                let outcome = self
                    .watch_abandoned(&connection, &queue, limit, handler.as_ref(), &session)
                    .await;
                if let Err(e) = outcome {
                    *broken.lock().expect("not poisoned") = Some(e.to_string());
                }
                session.cancel();
            }
        };
        let consume = async {
            consumer
                .take_until(session.cancelled())
                .for_each_concurrent(subscription.prefetch as usize, |delivery| {
                    let retry_channel = retry_channel.clone();
                    let broken = &broken;
                    let queue = queue.as_str();
                    async move {
                        match delivery {
                            Ok(delivery) => {
                                process(
                                    delivery,
                                    queue,
                                    subscription,
                                    handler.as_ref(),
                                    &retry_channel,
                                )
                                .await
                            }
                            Err(e) => {
                                *broken.lock().expect("not poisoned") = Some(e.to_string());
                            }
                        }
                    }
                })
                .await;
            session.cancel();
        };
        tokio::join!(consume, watch);
        let _ = channel.close(200, "consumer stopping".into()).await;
        let _ = connection.close(200, "consumer stopping".into()).await;
        match broken.into_inner().expect("not poisoned") {
            Some(reason) => Err(BusError::Unavailable(reason)),
            None if shutdown.is_cancelled() => Ok(()),
            None => Err(BusError::Unavailable("consumer stream ended".into())),
        }
    }
}

impl RabbitBus {
    /// Consumes `queue`'s watch queue until `session` ends: each dead letter that died in `queue`
    /// past its delivery limit goes to [`EventHandler::abandoned`] (again later when that fails);
    /// the other copies are acknowledged, their originals stay in the dead-letter queue.
    async fn watch_abandoned(
        &self,
        connection: &Connection,
        queue: &str,
        delivery_limit: u32,
        handler: &dyn EventHandler,
        session: &CancellationToken,
    ) -> Result<(), BusError> {
        let channel = connection.create_channel().await.map_err(unavailable)?;
        channel
            .basic_qos(1, BasicQosOptions::default())
            .await
            .map_err(unavailable)?;
        let watched = abandoned_queue_name(queue);
        let deliveries = channel
            .basic_consume(
                watched.as_str().into(),
                ShortString::from(format!("{watched}-{}", uuid::Uuid::now_v7())),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await
            .map_err(unavailable)?
            .take_until(session.cancelled());
        let mut deliveries = std::pin::pin!(deliveries);
        let mut result = Ok(());
        while let Some(delivery) = deliveries.next().await {
            let delivery = match delivery {
                Ok(delivery) => delivery,
                Err(e) => {
                    result = Err(unavailable(e));
                    break;
                }
            };
            let letter = DeadLetter::of(&delivery);
            let ours = letter.queue.as_deref() == Some(queue)
                && letter.reason.as_deref() == Some(DELIVERY_LIMIT_REASON);
            let envelope = if ours {
                Envelope::from_json(&delivery.data).ok()
            } else {
                None
            };
            let Some(envelope) = envelope else {
                let _ = delivery.ack(BasicAckOptions::default()).await;
                continue;
            };
            // RabbitMQ gives a message up when it comes back once more than the limit allows
            // (limit 2: the third death); the dead letter does not carry the count itself.
            let deliveries_counted = delivery_limit + 1;
            let delivered = Delivered {
                attempt: header_u32(&delivery, ATTEMPT_HEADER).unwrap_or(1).max(1),
                envelope,
                redelivered: true,
            };
            metrics::counter!("events_abandoned_total", "queue" => queue.to_owned()).increment(1);
            match handler.abandoned(&delivered, deliveries_counted).await {
                Ok(()) => {
                    let _ = delivery.ack(BasicAckOptions::default()).await;
                }
                Err(e) => {
                    tracing::warn!(%queue, error = %e, "could not end an abandoned delivery; trying again");
                    tokio::time::sleep(Duration::from_secs(2)).await;
                    nack(&delivery, true).await;
                }
            }
        }
        let _ = channel.close(200, "watch stopping".into()).await;
        result
    }
}

/// Where [`RabbitBus::move_messages_from`] takes messages from.
#[derive(Clone, Copy)]
enum SourceQueue {
    /// A queue where messages are set aside (parking, dead letters): declared if missing.
    Aside,
    /// Any queue, with whatever arguments it has: it must exist.
    Existing,
}

fn is_soft_error(e: &lapin::Error, expected: AMQPSoftError) -> bool {
    matches!(e.kind(), lapin::ErrorKind::ProtocolError(error)
        if matches!(error.kind(), AMQPErrorKind::Soft(soft) if *soft == expected))
}

/// Whether `queue` exists, asked on a channel of its own (a missing queue closes it).
async fn queue_exists(connection: &Connection, queue: &str) -> Result<bool, BusError> {
    let channel = connection.create_channel().await.map_err(unavailable)?;
    let passive = QueueDeclareOptions {
        passive: true,
        ..QueueDeclareOptions::default()
    };
    match channel
        .queue_declare(queue.into(), passive, FieldTable::default())
        .await
    {
        Ok(_) => {
            let _ = channel.close(200, "checked".into()).await;
            Ok(true)
        }
        Err(e) if is_soft_error(&e, AMQPSoftError::NOTFOUND) => Ok(false),
        Err(e) => Err(unavailable(e)),
    }
}

/// Deletes `queue` when it holds no message and has no consumer; otherwise (406, closing the
/// channel of its own) or when another replica deleted it first (404) leaves it be.
async fn delete_if_empty_and_unused(connection: &Connection, queue: &str) {
    let Ok(channel) = connection.create_channel().await else {
        return;
    };
    let options = QueueDeleteOptions {
        if_unused: true,
        if_empty: true,
        ..QueueDeleteOptions::default()
    };
    match channel.queue_delete(queue.into(), options).await {
        Ok(_) => {
            tracing::warn!(%queue, "replaced queue deleted");
            let _ = channel.close(200, "deleted".into()).await;
        }
        Err(e) if is_soft_error(&e, AMQPSoftError::NOTFOUND) => {}
        Err(e) => {
            tracing::warn!(%queue, error = %e, "replaced queue not deleted yet (not empty or still consumed); the next start tries again")
        }
    }
}

async fn declare_exchanges(channel: &Channel, topology: &Topology) -> Result<(), BusError> {
    channel
        .exchange_declare(
            topology.events_exchange.as_str().into(),
            ExchangeKind::Topic,
            topology.exchange_options(),
            FieldTable::default(),
        )
        .await
        .map_err(unavailable)?;
    channel
        .exchange_declare(
            topology.dead_letter_exchange.as_str().into(),
            ExchangeKind::Fanout,
            topology.exchange_options(),
            FieldTable::default(),
        )
        .await
        .map_err(unavailable)?;
    channel
        .queue_declare(
            topology.dead_letter_queue.as_str().into(),
            QueueDeclareOptions::durable(),
            topology.queue_arguments(),
        )
        .await
        .map_err(unavailable)?;
    channel
        .queue_bind(
            topology.dead_letter_queue.as_str().into(),
            topology.dead_letter_exchange.as_str().into(),
            "".into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
        .map_err(unavailable)?;
    Ok(())
}

fn unavailable(e: lapin::Error) -> BusError {
    BusError::Unavailable(e.to_string())
}

/// A dead-lettered message as an operator sees it: where and why it died, and which event it is
/// (read leniently: a dead letter may be anything, even undecodable bytes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetter {
    /// The queue it was dead-lettered from (RabbitMQ's `x-first-death-queue`).
    pub queue: Option<String>,
    /// `rejected` (a consumer gave up on it), `expired`, `maxlen`, `delivery_limit`.
    pub reason: Option<String>,
    pub event_type: Option<String>,
    pub job_id: Option<String>,
    pub event_id: Option<String>,
    pub bytes: usize,
}

impl DeadLetter {
    fn of(delivery: &Delivery) -> Self {
        let text = |name: &str| match delivery.properties.headers().as_ref()?.inner().get(name)? {
            AMQPValue::LongString(value) => Some(value.to_string()),
            AMQPValue::ShortString(value) => Some(value.to_string()),
            _ => None,
        };
        let json: Option<serde_json::Value> = serde_json::from_slice(&delivery.data).ok();
        let field = |name: &str| {
            json.as_ref()
                .and_then(|v| v.get(name))
                .and_then(|v| v.as_str())
                .map(str::to_owned)
        };
        // The latest death, not the first: an event that went through its retries first "died"
        // of old age in a retry queue, and only then was rejected by the service queue.
        let last = |key: &str| match last_death(delivery)?.inner().get(key)? {
            AMQPValue::LongString(value) => Some(value.to_string()),
            AMQPValue::ShortString(value) => Some(value.to_string()),
            _ => None,
        };
        Self {
            queue: last("queue").or_else(|| text("x-first-death-queue")),
            reason: last("reason").or_else(|| text("x-first-death-reason")),
            event_type: field("event_type"),
            job_id: field("job_id"),
            event_id: field("event_id"),
            bytes: delivery.data.len(),
        }
    }
}

/// The most recent entry of RabbitMQ's `x-death` (it keeps the latest first).
fn last_death(delivery: &Delivery) -> Option<&FieldTable> {
    let headers = delivery.properties.headers().as_ref()?;
    let AMQPValue::FieldArray(deaths) = headers.inner().get("x-death")? else {
        return None;
    };
    match deaths.as_slice().first()? {
        AMQPValue::FieldTable(death) => Some(death),
        _ => None,
    }
}

/// When the message was last dead-lettered (seconds since the epoch).
fn died_at(delivery: &Delivery) -> Option<u64> {
    match last_death(delivery)?.inner().get("time")? {
        AMQPValue::Timestamp(at) => Some(*at),
        _ => None,
    }
}

/// `properties` with the delivery's [`REDRIVEN_HEADER`], when it has one.
fn carry_redriven(properties: BasicProperties, delivery: &Delivery) -> BasicProperties {
    let Some(redriven) = header_u32(delivery, REDRIVEN_HEADER) else {
        return properties;
    };
    let mut headers = properties.headers().clone().unwrap_or_default();
    headers.insert(REDRIVEN_HEADER.into(), AMQPValue::LongUInt(redriven));
    properties.with_headers(headers)
}

fn header_u32(delivery: &Delivery, name: &str) -> Option<u32> {
    let headers = delivery.properties.headers().as_ref()?;
    match headers.inner().get(name)? {
        AMQPValue::LongLongInt(v) => u32::try_from(*v).ok(),
        AMQPValue::LongInt(v) => u32::try_from(*v).ok(),
        AMQPValue::LongUInt(v) => Some(*v),
        AMQPValue::ShortInt(v) => u32::try_from(*v).ok(),
        AMQPValue::ShortUInt(v) => Some(u32::from(*v)),
        _ => None,
    }
}

fn properties_for(envelope: &Envelope, attempt: u32) -> BasicProperties {
    let mut headers = FieldTable::default();
    headers.insert(
        ATTEMPT_HEADER.into(),
        AMQPValue::LongLongInt(attempt.into()),
    );
    if let Some(traceparent) = &envelope.traceparent {
        headers.insert(
            TRACEPARENT_HEADER.into(),
            AMQPValue::LongString(traceparent.as_str().into()),
        );
    }
    BasicProperties::default()
        .with_delivery_mode(2)
        .with_content_type("application/json".into())
        .with_message_id(envelope.event_id.to_string().into())
        .with_type(envelope.event_type().into())
        .with_app_id(envelope.producer.as_str().into())
        .with_headers(headers)
}

async fn publish_confirmed(
    channel: &Channel,
    exchange: &str,
    routing_key: &str,
    payload: &[u8],
    properties: BasicProperties,
    mandatory: bool,
) -> Result<(), BusError> {
    let confirm = channel
        .basic_publish(
            exchange.into(),
            routing_key.into(),
            BasicPublishOptions {
                mandatory,
                ..BasicPublishOptions::default()
            },
            payload,
            properties,
        )
        .await
        .map_err(unavailable)?;
    match tokio::time::timeout(CONFIRM_TIMEOUT, confirm).await {
        // A mandatory message that reached no queue is confirmed too, with the message returned.
        Ok(Ok(lapin::Confirmation::Ack(Some(_)))) => Err(BusError::NotConfirmed(format!(
            "no queue {routing_key} to take the message"
        ))),
        Ok(Ok(confirmation)) if confirmation.is_ack() => Ok(()),
        Ok(Ok(_)) => Err(BusError::NotConfirmed(
            "the broker refused the message".into(),
        )),
        Ok(Err(e)) => Err(BusError::NotConfirmed(e.to_string())),
        Err(_) => Err(BusError::NotConfirmed("no confirmation in time".into())),
    }
}

async fn process(
    delivery: Delivery,
    queue: &str,
    subscription: &Subscription,
    handler: &dyn EventHandler,
    retry_channel: &Channel,
) {
    let envelope = match Envelope::from_json(&delivery.data) {
        Ok(envelope) => envelope,
        Err(e) if e.is_from_newer_build() => {
            park(&delivery, queue, &e, retry_channel).await;
            return;
        }
        Err(e) => {
            // Malformed: no build will ever read it, so straight to the dead-letter queue.
            tracing::error!(%queue, error = %e, "undecodable message dead-lettered");
            metrics::counter!("events_dead_lettered_total", "queue" => queue.to_owned())
                .increment(1);
            nack(&delivery, false).await;
            return;
        }
    };
    let attempt = header_u32(&delivery, ATTEMPT_HEADER).unwrap_or(1).max(1);
    let delivered = Delivered {
        envelope,
        attempt,
        redelivered: delivery.redelivered,
    };
    let span = crate::trace::event_span(&delivered.envelope, queue);
    let event_type = delivered.envelope.event_type();
    let outcome = handler.handle(&delivered).instrument(span).await;
    let outcome_label = match &outcome {
        Outcome::Done => "done",
        Outcome::Retry(_) => "retry",
        Outcome::Defer(_) => "deferred",
    };
    metrics::counter!("events_consumed_total", "queue" => queue.to_owned(), "event_type" => event_type, "outcome" => outcome_label).increment(1);
    match outcome {
        Outcome::Done => {
            if let Err(e) = delivery.ack(BasicAckOptions::default()).await {
                // The broker will redeliver; handlers are idempotent.
                tracing::warn!(error = %e, "ack failed; the event will be redelivered");
            }
        }
        Outcome::Defer(reason) => {
            // Through the first retry queue with the attempt unchanged: a new message, so waiting
            // for another consumer never counts toward the queue's delivery limit either.
            let Some(delay) = subscription.retry_delays.first().copied() else {
                tokio::time::sleep(Duration::from_secs(1)).await;
                nack(&delivery, true).await;
                return;
            };
            let properties = properties_for(&delivered.envelope, attempt);
            let retry_queue = retry_queue_name(queue, delay);
            match publish_confirmed(
                retry_channel,
                "",
                &retry_queue,
                &delivery.data,
                properties,
                false,
            )
            .await
            {
                Ok(()) => {
                    tracing::info!(job_id = %delivered.envelope.job_id, ?delay, %reason, "deferred");
                    let _ = delivery.ack(BasicAckOptions::default()).await;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "could not defer; requeueing");
                    tokio::time::sleep(delay.min(Duration::from_secs(5))).await;
                    nack(&delivery, true).await;
                }
            }
        }
        Outcome::Retry(reason) => {
            let next_delay = subscription.retry_delays.get(attempt as usize - 1).copied();
            match next_delay {
                Some(delay) => {
                    let retry_queue = retry_queue_name(queue, delay);
                    let properties =
                        carry_redriven(properties_for(&delivered.envelope, attempt + 1), &delivery);
                    match publish_confirmed(
                        retry_channel,
                        "",
                        &retry_queue,
                        &delivery.data,
                        properties,
                        false,
                    )
                    .await
                    {
                        Ok(()) => {
                            metrics::counter!("event_retries_total", "queue" => queue.to_owned())
                                .increment(1);
                            tracing::warn!(
                                job_id = %delivered.envelope.job_id, attempt, ?delay, %reason,
                                "transient failure; retry scheduled"
                            );
                            let _ = delivery.ack(BasicAckOptions::default()).await;
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, "could not schedule retry; requeueing");
                            tokio::time::sleep(delay.min(Duration::from_secs(5))).await;
                            nack(&delivery, true).await;
                        }
                    }
                }
                None => {
                    tracing::error!(
                        job_id = %delivered.envelope.job_id, attempt, %reason,
                        "retries exhausted; dead-lettering"
                    );
                    handler.exhausted(&delivered, &reason).await;
                    metrics::counter!("events_dead_lettered_total", "queue" => queue.to_owned())
                        .increment(1);
                    nack(&delivery, false).await;
                }
            }
        }
    }
}

/// Sets an event a newer build wrote aside in the queue's parking queue, as it came, and
/// acknowledges it once the broker holds the copy. Neither retried (this build will never read it)
/// nor dead-lettered (a newer one will).
async fn park(delivery: &Delivery, queue: &str, error: &DecodeError, channel: &Channel) {
    let parked = parked_queue_name(queue);
    let mut headers = delivery.properties.headers().clone().unwrap_or_default();
    headers.insert(
        PARKED_REASON_HEADER.into(),
        AMQPValue::LongString(error.to_string().into()),
    );
    let properties = delivery.properties.clone().with_headers(headers);
    match publish_confirmed(channel, "", &parked, &delivery.data, properties, true).await {
        Ok(()) => {
            tracing::warn!(%queue, %parked, error = %error, "event from a newer build parked for re-drive");
            metrics::counter!("events_parked_total", "queue" => queue.to_owned(), "reason" => error.kind())
                .increment(1);
            if let Err(e) = delivery.ack(BasicAckOptions::default()).await {
                // Redelivered and parked a second time: a duplicate, which handlers tolerate.
                tracing::warn!(error = %e, "ack of a parked event failed; it will be redelivered");
            }
        }
        Err(e) => {
            tracing::warn!(%queue, error = %e, "could not park an event; requeueing");
            tokio::time::sleep(Duration::from_secs(1)).await;
            nack(delivery, true).await;
        }
    }
}

/// `properties` without the headers `names`.
/// A dead letter's properties for its way back into its queue: the broker's death headers gone,
/// attempts counted from 1 again and, for an automatic re-drive, [`REDRIVEN_HEADER`] set.
fn revived(properties: &BasicProperties, redriven: Option<u32>) -> BasicProperties {
    let properties = without_headers(
        properties,
        &[
            "x-death",
            "x-first-death-queue",
            "x-first-death-reason",
            "x-first-death-exchange",
        ],
    );
    let mut headers = properties.headers().clone().unwrap_or_default();
    headers.insert(ATTEMPT_HEADER.into(), AMQPValue::LongUInt(1));
    if let Some(redriven) = redriven {
        headers.insert(REDRIVEN_HEADER.into(), AMQPValue::LongUInt(redriven));
    }
    properties.with_headers(headers)
}

fn without_headers(properties: &BasicProperties, names: &[&str]) -> BasicProperties {
    let mut headers = properties
        .headers()
        .as_ref()
        .map(|h| h.inner().clone())
        .unwrap_or_default();
    for name in names {
        headers.remove(*name);
    }
    properties.clone().with_headers(headers.into())
}

async fn nack(delivery: &Delivery, requeue: bool) {
    let options = BasicNackOptions {
        requeue,
        ..BasicNackOptions::default()
    };
    if let Err(e) = delivery.nack(options).await {
        tracing::warn!(error = %e, "nack failed; the broker will redeliver");
    }
}

#[async_trait]
impl EventBus for RabbitBus {
    async fn publish(&self, event: &Envelope) -> Result<(), BusError> {
        let mut slot = self.publisher.lock().await;
        let payload = event.to_json();
        // A cached channel may have died since its last use: one fresh attempt before giving up.
        for attempt in 0..2 {
            let channel = self.publishing_channel(&mut slot).await?;
            let result = publish_confirmed(
                &channel,
                &self.topology.events_exchange,
                event.event_type(),
                &payload,
                properties_for(event, 1),
                false,
            )
            .await;
            let outcome = if result.is_ok() { "ok" } else { "error" };
            metrics::counter!("events_published_total", "event_type" => event.event_type(), "outcome" => outcome).increment(1);
            match result {
                Ok(()) => return Ok(()),
                Err(e) if attempt == 1 => {
                    *slot = None;
                    return Err(e);
                }
                Err(_) => *slot = None,
            }
        }
        unreachable!("the loop returns on its last attempt")
    }

    async fn consume(
        &self,
        subscription: Subscription,
        handler: Arc<dyn EventHandler>,
        shutdown: CancellationToken,
    ) -> Result<(), BusError> {
        let mut backoff = crate::retry::reconnect().build();
        loop {
            if shutdown.is_cancelled() {
                return Ok(());
            }
            match self.consume_once(&subscription, &handler, &shutdown).await {
                Ok(()) => return Ok(()),
                Err(e) => {
                    let delay = backoff.next().unwrap_or(Duration::from_secs(10));
                    tracing::warn!(queue = %subscription.queue, error = %e, ?delay, "broker connection lost; reconnecting");
                    tokio::select! {
                        _ = tokio::time::sleep(delay) => {}
                        _ = shutdown.cancelled() => return Ok(()),
                    }
                }
            }
        }
    }

    async fn check(&self) -> Result<(), BusError> {
        let mut slot = self.publisher.lock().await;
        self.publishing_channel(&mut slot).await.map(|_| ())
    }

    async fn auto_redrive_dead_letters(
        &self,
        queue: &str,
        policy: crate::bus::AutoRedrive,
    ) -> Result<u64, BusError> {
        self.redrive_dead_letters_after(queue, policy).await
    }
}
