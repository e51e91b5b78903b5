//! An ordered parallel map: the shape of every bulk signature check (a batch submit, `verify`
//! of an export). Workers verify chunks on every core while the calling thread consumes the
//! results strictly in input order (folding state, queueing commits), with a fixed number of
//! chunks in flight so memory stays bounded whatever the input's length.

use std::collections::BTreeMap;
use std::ops::ControlFlow;
use std::sync::mpsc;
use std::sync::{Mutex, OnceLock};

/// Worker threads for bulk verification: the machine's cores, at most 8. Asked once per
/// process: `available_parallelism` reads the cgroup files on every call, which cost a quarter
/// of a batch submitter's own time.
pub(crate) fn worker_threads() -> usize {
    static THREADS: OnceLock<usize> = OnceLock::new();
    *THREADS.get_or_init(|| {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
            .clamp(1, 8)
    })
}

/// Apply `work` to each item of `inputs` on `threads` workers and hand the results to `sink`
/// in input order. At most `in_flight` items are taken from `inputs` and not yet sunk. `inputs`
/// and `sink` run on the calling thread; `sink` may stop the run early with
/// `ControlFlow::Break`, after which no further input is taken.
pub(crate) fn ordered_map<I, O>(
    inputs: impl Iterator<Item = I>,
    threads: usize,
    in_flight: usize,
    work: impl Fn(I) -> O + Sync,
    mut sink: impl FnMut(O) -> ControlFlow<()>,
) where
    I: Send,
    O: Send,
{
    assert!(threads >= 1 && in_flight >= 1);
    let mut inputs = inputs.enumerate();
    let (work_tx, work_rx) = mpsc::channel::<(usize, I)>();
    let work_rx = Mutex::new(work_rx);
    // A worker's panic comes back as its answer and is resumed on the calling thread: the
    // run fails loudly instead of waiting forever for an answer that never comes.
    type Answer<O> = Result<O, Box<dyn std::any::Any + Send>>;
    let (done_tx, done_rx) = mpsc::channel::<(usize, Answer<O>)>();
    std::thread::scope(|s| {
        for _ in 0..threads {
            let (work_rx, done_tx, work) = (&work_rx, done_tx.clone(), &work);
            s.spawn(move || loop {
                let next = work_rx.lock().unwrap_or_else(|p| p.into_inner()).recv();
                let Ok((i, item)) = next else { break };
                let answer = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| work(item)));
                let failed = answer.is_err();
                if done_tx.send((i, answer)).is_err() || failed {
                    break;
                }
            });
        }
        drop(done_tx);
        let mut pending = 0usize;
        let mut exhausted = false;
        let mut ready = BTreeMap::new();
        let mut next_out = 0usize;
        'run: loop {
            while !exhausted && pending < in_flight {
                match inputs.next() {
                    Some(job) => {
                        work_tx
                            .send(job)
                            .expect("workers live until the sender drops");
                        pending += 1;
                    }
                    None => exhausted = true,
                }
            }
            if pending == 0 {
                break;
            }
            let (i, answer) = done_rx.recv().expect("a worker answers every job");
            let out = match answer {
                Ok(out) => out,
                Err(panic) => std::panic::resume_unwind(panic),
            };
            ready.insert(i, out);
            while let Some(out) = ready.remove(&next_out) {
                next_out += 1;
                pending -= 1;
                if sink(out).is_break() {
                    break 'run;
                }
            }
        }
        // Workers stop once the queue is closed (jobs still queued are abandoned unread).
        drop(work_tx);
        let rx = work_rx.lock().unwrap_or_else(|p| p.into_inner());
        while rx.try_recv().is_ok() {}
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn results_arrive_in_order_with_bounded_flight() {
        let mut seen = Vec::new();
        ordered_map(
            0..1000u64,
            3,
            4,
            |i| {
                // Uneven work so results finish out of order.
                std::thread::sleep(std::time::Duration::from_micros((i * 7919) % 50));
                i * 2
            },
            |o| {
                seen.push(o);
                ControlFlow::Continue(())
            },
        );
        assert_eq!(seen, (0..1000).map(|i| i * 2).collect::<Vec<_>>());
    }

    #[test]
    fn a_panicking_job_fails_the_run_instead_of_hanging_it() {
        let run = std::panic::catch_unwind(|| {
            ordered_map(
                0..100u32,
                2,
                4,
                |i| {
                    assert_ne!(i, 7, "job 7 fails");
                    i
                },
                |_| ControlFlow::Continue(()),
            )
        });
        assert!(run.is_err());
    }

    #[test]
    fn a_break_stops_taking_input() {
        let taken = std::sync::atomic::AtomicUsize::new(0);
        let mut sunk = 0;
        ordered_map(
            (0..10_000).inspect(|_| {
                taken.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            }),
            2,
            8,
            |i| i,
            |i| {
                sunk += 1;
                if i == 10 {
                    ControlFlow::Break(())
                } else {
                    ControlFlow::Continue(())
                }
            },
        );
        assert_eq!(sunk, 11);
        assert!(taken.load(std::sync::atomic::Ordering::SeqCst) <= 11 + 8);
    }
}
