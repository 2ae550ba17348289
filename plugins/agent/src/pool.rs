//! Spreading one call's work over a pool of agents.
//!
//! The work (one search generation) is cut into chunks; each agent has a thread that takes the
//! next chunk from a shared queue as soon as its previous one is answered, so a faster agent
//! takes more chunks. An agent that cannot be reached or stops answering (an I/O error:
//! connection refused or reset, a timeout) puts its chunk back for the others and takes no more
//! in this call; only when every agent has failed so is the call an error. Any other error (an
//! architecture the agent refuses, a limit) is the call's error, as with one agent, and the
//! other threads stop taking chunks. The results come back in the order of the input, whoever
//! computed them.

use std::collections::VecDeque;
use std::ops::Range;
use std::sync::{Condvar, Mutex};

use donna_sdk::{Result, SdkError};

/// Whether `e` says the agent could not be reached or stopped answering, so that its work can
/// go to another agent (rather than an answer from it, which another agent would repeat).
pub fn is_agent_failure(e: &SdkError) -> bool {
    matches!(e, SdkError::Io { .. })
}

struct State<T> {
    /// Chunks not yet taken (or given back), by index.
    queue: VecDeque<usize>,
    /// The results of the chunks answered so far.
    done: Vec<Option<Vec<T>>>,
    /// Chunks not answered yet, taken or not.
    pending: usize,
    /// Agents still taking chunks.
    live: usize,
    /// An error that ends the call.
    fatal: Option<SdkError>,
    /// The failures of agents left out, in the order they happened.
    lost: Vec<SdkError>,
}

/// Runs `work(agent, &items[chunk])` for every chunk of `chunks` on `agents` agents, one thread
/// each taking chunks from a shared queue, and returns the results of all chunks in the order
/// of `items`. `work` returns one result per item it is given. An agent whose `work` fails with
/// [`is_agent_failure`] gives its chunk back and is left out for the rest of the call (said on
/// stderr); other errors end the call.
pub fn spread<T, F>(agents: usize, items: &[String], chunks: &[Range<usize>], work: F) -> Result<Vec<T>>
where
    T: Send,
    F: Fn(usize, &[String]) -> Result<Vec<T>> + Sync,
{
    if chunks.is_empty() {
        return Ok(Vec::new());
    }
    if agents == 0 {
        return Err(SdkError::Config("agent: no agents to measure on".into()));
    }
    let state = Mutex::new(State {
        queue: (0..chunks.len()).collect(),
        done: chunks.iter().map(|_| None).collect(),
        pending: chunks.len(),
        live: agents,
        fatal: None,
        lost: Vec::new(),
    });
    let changed = Condvar::new();
    let lock = || state.lock().unwrap_or_else(|p| p.into_inner());
    std::thread::scope(|scope| {
        for agent in 0..agents {
            let (work, changed) = (&work, &changed);
            scope.spawn(move || loop {
                // Wait for a chunk: one in the queue, or one given back by a failing agent.
                let chunk = {
                    let mut s = lock();
                    loop {
                        if s.fatal.is_some() || s.pending == 0 {
                            return;
                        }
                        if let Some(c) = s.queue.pop_front() {
                            break c;
                        }
                        s = changed.wait(s).unwrap_or_else(|p| p.into_inner());
                    }
                };
                let range = chunks[chunk].clone();
                let outcome = work(agent, &items[range.clone()]).and_then(|r| {
                    if r.len() == range.len() {
                        Ok(r)
                    } else {
                        Err(SdkError::Config(format!("agent: {} results for {} architectures", r.len(), range.len())))
                    }
                });
                let mut s = lock();
                let stop = match outcome {
                    Ok(r) => {
                        s.done[chunk] = Some(r);
                        s.pending -= 1;
                        false
                    }
                    Err(e) if is_agent_failure(&e) => {
                        s.queue.push_front(chunk);
                        s.live -= 1;
                        if s.live > 0 && s.fatal.is_none() {
                            eprintln!(
                                "donna: {e}; its {} architectures go to the other {} agent(s), and it takes no more \
                                 in this call",
                                range.len(),
                                s.live
                            );
                        }
                        s.lost.push(e);
                        true
                    }
                    Err(e) => {
                        s.fatal.get_or_insert(e);
                        true
                    }
                };
                drop(s);
                changed.notify_all();
                if stop {
                    return;
                }
            });
        }
    });
    let s = state.into_inner().unwrap_or_else(|p| p.into_inner());
    if let Some(e) = s.fatal {
        return Err(e);
    }
    if s.pending > 0 {
        return Err(all_failed(s.lost));
    }
    Ok(s.done.into_iter().flatten().flatten().collect())
}

/// The error of a call on which every agent failed: the failure itself with one agent, all of
/// them on one line with several.
fn all_failed(mut lost: Vec<SdkError>) -> SdkError {
    if lost.len() == 1 {
        return lost.remove(0);
    }
    let kind = match lost.last() {
        Some(SdkError::Io { source, .. }) => source.kind(),
        _ => std::io::ErrorKind::Other,
    };
    let each: Vec<String> = lost.iter().map(ToString::to_string).collect();
    SdkError::Io {
        path: "agent pool".into(),
        source: std::io::Error::new(kind, format!("every agent failed: {}", each.join("; "))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    fn items(n: usize) -> Vec<String> {
        (0..n).map(|i| i.to_string()).collect()
    }

    /// `0..n` in chunks of 1, 2 and 3 items in turn.
    fn uneven_chunks(n: usize) -> Vec<Range<usize>> {
        let mut out = Vec::new();
        let mut start = 0;
        for size in [1, 2, 3].into_iter().cycle() {
            if start >= n {
                break;
            }
            out.push(start..(start + size).min(n));
            start += size;
        }
        out
    }

    fn refused(agent: usize) -> SdkError {
        SdkError::Io {
            path: format!("agent a{agent}:1"),
            source: std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "connection refused"),
        }
    }

    /// Every item as a number, tagged with the agent that computed it.
    fn parse(agent: usize, items: &[String]) -> Vec<(usize, usize)> {
        items.iter().map(|i| (i.parse().unwrap(), agent)).collect()
    }

    #[test]
    fn results_come_back_in_order_and_a_faster_agent_takes_more_chunks() {
        let (items, chunks) = (items(60), uneven_chunks(60));
        let taken: Vec<AtomicUsize> = (0..3).map(|_| AtomicUsize::new(0)).collect();
        let out = spread(3, &items, &chunks, |agent, part| {
            taken[agent].fetch_add(1, Ordering::SeqCst);
            std::thread::sleep(Duration::from_millis([1, 4, 20][agent]));
            Ok(parse(agent, part))
        })
        .unwrap();
        assert_eq!(out.iter().map(|r| r.0).collect::<Vec<_>>(), (0..60).collect::<Vec<_>>());
        let taken: Vec<usize> = taken.iter().map(|t| t.load(Ordering::SeqCst)).collect();
        assert_eq!(taken.iter().sum::<usize>(), chunks.len(), "each chunk once: {taken:?}");
        assert!(taken[0] > taken[2] && taken[2] >= 1, "the fastest takes the most: {taken:?}");
        // Each result is the one its agent computed for it, whatever the agent.
        for (i, &(item, agent)) in out.iter().enumerate() {
            assert_eq!(item, i);
            assert!(agent < 3);
        }
    }

    #[test]
    fn a_failing_agents_chunk_is_redone_by_the_others_and_it_takes_no_more() {
        let (items, chunks) = (items(30), uneven_chunks(30));
        let calls: Vec<AtomicUsize> = (0..3).map(|_| AtomicUsize::new(0)).collect();
        let out = spread(3, &items, &chunks, |agent, part| {
            let call = calls[agent].fetch_add(1, Ordering::SeqCst);
            std::thread::sleep(Duration::from_millis(2));
            match agent {
                // Dead from the start.
                1 => Err(refused(1)),
                // Answers twice, then dies.
                2 if call >= 2 => Err(refused(2)),
                _ => Ok(parse(agent, part)),
            }
        })
        .unwrap();
        assert_eq!(out.iter().map(|r| r.0).collect::<Vec<_>>(), (0..30).collect::<Vec<_>>());
        assert!(out.iter().all(|&(_, agent)| agent != 1), "nothing from the dead agent");
        assert_eq!(calls[1].load(Ordering::SeqCst), 1, "a failed agent is asked once");
        assert!(calls[2].load(Ordering::SeqCst) <= 3, "and the one that died takes no more after");
    }

    #[test]
    fn when_every_agent_fails_the_call_fails_naming_each() {
        let (items, chunks) = (items(5), uneven_chunks(5));
        let e = spread(3, &items, &chunks, |agent, _| Err::<Vec<()>, _>(refused(agent))).unwrap_err();
        assert!(is_agent_failure(&e), "{e:?}");
        let msg = e.to_string();
        assert!(msg.starts_with("agent pool: every agent failed: "), "{msg}");
        assert!((0..3).all(|a| msg.contains(&format!("agent a{a}:1: connection refused"))), "{msg}");
        assert_eq!(msg.lines().count(), 1, "{msg}");
        // With one agent, its own error as it was.
        let e = spread(1, &items, &chunks, |agent, _| Err::<Vec<()>, _>(refused(agent))).unwrap_err();
        assert_eq!(e.to_string(), "agent a0:1: connection refused");
    }

    #[test]
    fn an_answer_that_is_an_error_ends_the_call_and_nothing_else_is_retried() {
        let (items, chunks) = (items(12), uneven_chunks(12));
        let calls = AtomicUsize::new(0);
        let e = spread(2, &items, &chunks, |agent, part| {
            calls.fetch_add(1, Ordering::SeqCst);
            if part.contains(&"4".to_owned()) {
                Err(SdkError::Config(format!("agent a{agent}:1: 4: not an architecture")))
            } else {
                Ok(parse(agent, part))
            }
        })
        .unwrap_err();
        assert!(matches!(&e, SdkError::Config(m) if m.ends_with("4: not an architecture")), "{e:?}");
        assert!(calls.load(Ordering::SeqCst) <= chunks.len());
        let short = spread(2, &items, &chunks, |_, _| Ok(vec![()])).unwrap_err().to_string();
        assert!(short.contains("1 results for 2 architectures"), "{short}");
        let none: Vec<()> = spread(2, &[], &[], |_, _| -> Result<Vec<()>> { unreachable!() }).unwrap();
        assert!(none.is_empty());
    }
}
