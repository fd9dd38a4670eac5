//! The login pool: where password hashes are computed, off the async workers, a bounded number
//! at a time.
//!
//! One Argon2id check costs tens of milliseconds of CPU ([`crate::accounts::password`]). Run on
//! the runtime's worker threads, a storm of logins at a sale's start would stall every buy and
//! result poll queued behind them. So hashes run on threads of their own (`login_threads`), which
//! also run at a lower scheduling priority (`login_nice`, Linux's per-thread nice value): when the
//! buy path wants the CPU, the kernel gives it to the buy path first. At most `login_threads +
//! login_queue` logins are in the pool at once; past that a login is refused at once with 503,
//! `Retry-After` and the envelope ([`AppError::LoginBusy`]), rather than queueing without bound.
//! The login route takes its place ([`LoginPool::reserve`]) before any Redis or MySQL read, so a
//! refused login costs the edge only its answer.
//! A login whose client has gone is dropped before its hash is computed.

use std::sync::mpsc;
use std::sync::{Arc, Mutex};

use tokio::sync::{Semaphore, oneshot};

use crate::error::AppError;

type Job = Box<dyn FnOnce() + Send>;

/// A place held in the login pool ([`LoginPool::reserve`]); dropped, it frees the place.
pub struct Slot(tokio::sync::OwnedSemaphorePermit);

/// How long a refused login is told to wait.
pub const BUSY_RETRY_AFTER_MS: u64 = 1000;

pub struct LoginPool {
    jobs: Mutex<mpsc::Sender<Job>>,
    /// One permit per login in the pool, running or waiting.
    slots: Arc<Semaphore>,
    /// Logins the pool holds at most (threads + queue).
    capacity: usize,
}

impl LoginPool {
    /// Starts `threads` hashing threads at niceness `nice` (0 = as the rest of the process), with
    /// room for `queue` more logins waiting.
    pub fn new(threads: usize, queue: usize, nice: i32) -> Self {
        let (tx, rx) = mpsc::channel::<Job>();
        let rx = Arc::new(Mutex::new(rx));
        for i in 0..threads.max(1) {
            let rx = rx.clone();
            std::thread::Builder::new()
                .name(format!("login-hash-{i}"))
                .spawn(move || {
                    lower_priority(nice);
                    loop {
                        let job = match rx.lock().expect("login queue lock").recv() {
                            Ok(job) => job,
                            Err(_) => return, // the pool is gone
                        };
                        job();
                    }
                })
                .expect("spawning a login hashing thread");
        }
        let capacity = threads.max(1) + queue;
        Self {
            jobs: Mutex::new(tx),
            slots: Arc::new(Semaphore::new(capacity)),
            capacity,
        }
    }

    /// A place in the pool, or [`AppError::LoginBusy`] at once when it is full. Taken before a
    /// login does any I/O, so a refused login costs the edge nothing but its answer.
    pub fn reserve(&self) -> Result<Slot, AppError> {
        self.slots
            .clone()
            .try_acquire_owned()
            .map(Slot)
            .map_err(|_| AppError::LoginBusy {
                retry_after_ms: BUSY_RETRY_AFTER_MS,
            })
    }

    /// Runs `work` on the pool and waits for its answer; [`AppError::LoginBusy`] at once when the
    /// pool is full.
    pub async fn run<T, F>(&self, work: F) -> Result<T, AppError>
    where
        T: Send + 'static,
        F: FnOnce() -> T + Send + 'static,
    {
        let slot = self.reserve()?;
        self.run_in(slot, work).await
    }

    /// Runs `work` in the place `slot` holds, and waits for its answer.
    pub async fn run_in<T, F>(&self, slot: Slot, work: F) -> Result<T, AppError>
    where
        T: Send + 'static,
        F: FnOnce() -> T + Send + 'static,
    {
        let permit = slot.0;
        let (tx, rx) = oneshot::channel();
        let job: Job = Box::new(move || {
            let _permit = permit; // frees the slot when the work is done
            if tx.is_closed() {
                return; // the login was abandoned while it waited
            }
            let _ = tx.send(work());
        });
        self.jobs
            .lock()
            .expect("login queue lock")
            .send(job)
            .map_err(|_| AppError::Internal(anyhow::anyhow!("the login pool has stopped")))?;
        rx.await
            .map_err(|_| AppError::Internal(anyhow::anyhow!("a login hash was dropped")))
    }

    /// Logins in the pool now, running or waiting.
    pub fn in_use(&self) -> usize {
        self.capacity - self.slots.available_permits()
    }
}

/// Sets this thread's nice value (Linux: `setpriority` on the thread id changes only this thread).
fn lower_priority(nice: i32) {
    if nice == 0 {
        return;
    }
    #[cfg(target_os = "linux")]
    {
        // SAFETY: plain syscalls on this thread's own id; failure only leaves the priority as is.
        let rc = unsafe {
            let tid = libc::syscall(libc::SYS_gettid) as libc::id_t;
            libc::setpriority(libc::PRIO_PROCESS, tid, nice)
        };
        if rc != 0 {
            tracing::warn!(nice, "could not lower the login threads' priority");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc::channel;
    use std::time::Duration;

    #[tokio::test]
    async fn past_its_bound_the_pool_refuses_at_once_and_takes_work_again_when_it_frees() {
        let pool = Arc::new(LoginPool::new(1, 1, 0));
        let (release, gate) = channel::<()>();
        let gate = Arc::new(Mutex::new(gate));
        // one running (held by the gate), one waiting: the pool is full
        let mut held = Vec::new();
        for _ in 0..2 {
            let (pool, gate) = (pool.clone(), gate.clone());
            held.push(tokio::spawn(async move {
                pool.run(move || gate.lock().unwrap().recv().is_ok()).await
            }));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(pool.in_use(), 2);
        let refused = pool.run(|| true).await;
        assert!(
            matches!(refused, Err(AppError::LoginBusy { retry_after_ms }) if retry_after_ms > 0),
            "{refused:?}"
        );
        release.send(()).unwrap();
        release.send(()).unwrap();
        for h in held {
            assert!(h.await.unwrap().unwrap());
        }
        assert_eq!(pool.run(|| 7).await.unwrap(), 7);
    }

    #[test]
    fn the_hashing_threads_run_at_the_niceness_asked_for() {
        let pool = LoginPool::new(1, 0, 7);
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let nice = rt.block_on(pool.run(|| unsafe {
            let tid = libc::syscall(libc::SYS_gettid) as libc::id_t;
            libc::getpriority(libc::PRIO_PROCESS, tid)
        }));
        // a process already at a higher nice value cannot go lower without privilege
        assert!(nice.unwrap() >= 7);
    }
}
