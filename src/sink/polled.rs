//! A producer whose delivery reports are served by a thread that sleeps
//! until librdkafka has queued one.
//!
//! rust-rdkafka's `ThreadedProducer` polls in a loop of 100 ms polls, each
//! of which rounds its remaining time down to whole milliseconds: the last
//! millisecond of every poll is a run of polls that do not wait. That is
//! 0.5 to 1% of a core per producer, idle or busy. Here librdkafka writes
//! a byte to a socket when an event reaches its empty main queue
//! (`rd_kafka_queue_io_event_enable`), and the thread blocks on reading
//! it.

use std::io::Read as _;
use std::net::Shutdown;
use std::os::fd::AsRawFd as _;
use std::os::unix::net::UnixStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use rdkafka::producer::{BaseProducer, Producer, ProducerContext};
use rdkafka_sys as rdsys;

/// A reference to a client's main queue, released when dropped.
struct MainQueue(*mut rdsys::rd_kafka_queue_t);

// SAFETY: librdkafka's queues are thread-safe (every operation takes the
// queue's lock); the pointer is only passed to librdkafka.
unsafe impl Send for MainQueue {}
// SAFETY: as for `Send`.
unsafe impl Sync for MainQueue {}

impl MainQueue {
    fn len(&self) -> usize {
        // SAFETY: `self.0` is a live queue reference until `drop`.
        unsafe { rdsys::rd_kafka_queue_length(self.0) }
    }

    /// Stops librdkafka writing to the socket; it takes the queue's lock,
    /// so no write is under way once it returns.
    fn no_wake_ups(&self) {
        // SAFETY: a live queue; fd -1 removes the trigger.
        unsafe { rdsys::rd_kafka_queue_io_event_enable(self.0, -1, std::ptr::null(), 0) };
    }
}

impl Drop for MainQueue {
    fn drop(&mut self) {
        // SAFETY: the reference `rd_kafka_queue_get_main` gave, released
        // once; the client outlives it (the producer is dropped after).
        unsafe { rdsys::rd_kafka_queue_destroy(self.0) }
    }
}

/// A [`BaseProducer`] (which it dereferences to) with a thread of its
/// own serving its delivery reports and other events.
pub struct PolledProducer<C: ProducerContext + 'static> {
    // Dropped after the queue reference (fields drop in order).
    queue: Arc<MainQueue>,
    producer: Arc<BaseProducer<C>>,
    /// The socket librdkafka writes to; shut down to stop the thread.
    wake: UnixStream,
    /// Set to stop a thread that lost its socket and polls instead.
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl<C: ProducerContext + 'static> PolledProducer<C> {
    /// Serves `producer`'s events on a thread named `name`.
    ///
    /// # Errors
    /// When the socket pair or the thread cannot be made.
    pub fn new(producer: BaseProducer<C>, name: &str) -> std::io::Result<Self> {
        let (events, wake) = UnixStream::pair()?;
        // librdkafka writes from its own threads: it must never block.
        wake.set_nonblocking(true)?;
        let producer = Arc::new(producer);
        // SAFETY: the client is live (owned by `producer`); the reference
        // returned is released by `MainQueue`'s drop, before the client.
        let queue = Arc::new(MainQueue(unsafe {
            rdsys::rd_kafka_queue_get_main(producer.client().native_ptr())
        }));
        // SAFETY: a live queue and an open, non-blocking socket that stays
        // open until the trigger is removed (`Drop`); librdkafka copies
        // the payload.
        unsafe {
            rdsys::rd_kafka_queue_io_event_enable(
                queue.0,
                wake.as_raw_fd(),
                b"1".as_ptr().cast(),
                1,
            );
        }
        let stop = Arc::new(AtomicBool::new(false));
        let spawned = {
            let (producer, queue, stop) =
                (Arc::clone(&producer), Arc::clone(&queue), Arc::clone(&stop));
            std::thread::Builder::new()
                .name(name.into())
                .spawn(move || serve(&producer, &queue, events, &stop))
        };
        let thread = spawned.inspect_err(|_| queue.no_wake_ups())?;
        Ok(Self {
            queue,
            producer,
            wake,
            stop,
            thread: Some(thread),
        })
    }
}

/// Serves every queued event, then sleeps until librdkafka writes that
/// another reached the empty queue; returns once the socket is shut down.
/// Should reading the socket fail, it polls every 100 ms until `stop`.
fn serve<C: ProducerContext>(
    producer: &BaseProducer<C>,
    queue: &MainQueue,
    mut events: UnixStream,
    stop: &AtomicBool,
) {
    let mut buf = [0u8; 64];
    loop {
        // A poll of zero serves at most one event. An event queued after
        // the length reads 0 finds the queue empty, so librdkafka writes.
        while queue.len() > 0 {
            producer.poll(Duration::ZERO);
        }
        match events.read(&mut buf) {
            Ok(0) => return,
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => {
                tracing::error!(error = %e, "producer events: the wake-up socket failed; polling instead");
                queue.no_wake_ups();
                while !stop.load(Ordering::Relaxed) {
                    producer.poll(Duration::from_millis(100));
                }
                return;
            }
        }
    }
}

impl<C: ProducerContext + 'static> std::ops::Deref for PolledProducer<C> {
    type Target = BaseProducer<C>;

    fn deref(&self) -> &BaseProducer<C> {
        &self.producer
    }
}

impl<C: ProducerContext + 'static> Drop for PolledProducer<C> {
    fn drop(&mut self) {
        // Before the socket closes, so that librdkafka never writes to a
        // closed descriptor.
        self.queue.no_wake_ups();
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.wake.shutdown(Shutdown::Write);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
        // What is left in the queue is served by the producer's own drop
        // (it purges and flushes).
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rdkafka::ClientConfig;
    use rdkafka::producer::{BaseRecord, DeliveryResult};
    use std::sync::mpsc;

    struct Reports(std::sync::Mutex<mpsc::Sender<bool>>);

    impl rdkafka::ClientContext for Reports {}

    impl ProducerContext for Reports {
        type DeliveryOpaque = ();

        fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
            let _ = self.0.lock().unwrap().send(result.is_ok());
        }
    }

    /// The voluntary context switches of this process's threads named
    /// `name`, and how many there are.
    fn wake_ups(name: &str) -> (u64, usize) {
        let (mut switches, mut threads) = (0, 0);
        for task in std::fs::read_dir("/proc/self/task").unwrap().flatten() {
            let comm = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
            if comm.trim() == name {
                threads += 1;
                let status = std::fs::read_to_string(task.path().join("status")).unwrap();
                switches += status
                    .lines()
                    .find_map(|l| l.strip_prefix("voluntary_ctxt_switches:"))
                    .map_or(0, |v| v.trim().parse::<u64>().unwrap());
            }
        }
        (switches, threads)
    }

    #[test]
    fn delivery_reports_arrive_and_an_idle_producer_sleeps() {
        let broker = crate::broker::EmbeddedBroker::start(1).unwrap();
        broker.create_topic("polled", 1).unwrap();
        let (tx, rx) = mpsc::channel();
        let producer: BaseProducer<Reports> = ClientConfig::new()
            .set("bootstrap.servers", broker.bootstrap_servers())
            .create_with_context(Reports(std::sync::Mutex::new(tx)))
            .unwrap();
        let producer = PolledProducer::new(producer, "test-deliveries").unwrap();
        for round in 0..3 {
            for i in 0..100 {
                let key = format!("{round}-{i}");
                producer
                    .send(BaseRecord::to("polled").key(&key).payload("v"))
                    .unwrap();
            }
            for _ in 0..100 {
                let ok = rx.recv_timeout(Duration::from_secs(10));
                assert_eq!(ok, Ok(true), "a delivery report did not come");
            }
        }
        // Idle for a second: a thread that polled with a timeout would
        // wake at least once per timeout (ten times for 100 ms).
        let (before, threads) = wake_ups("test-deliveries");
        assert_eq!(threads, 1);
        std::thread::sleep(Duration::from_secs(1));
        let (after, _) = wake_ups("test-deliveries");
        assert!(
            after - before <= 2,
            "the idle delivery thread woke {} times",
            after - before
        );
        drop(producer);
        assert_eq!(
            wake_ups("test-deliveries").1,
            0,
            "the delivery thread outlived its producer"
        );
    }
}
