//! Reads the entry makes for the core: while [`drive`] polls a request's future, a store read
//! with a time limit ([`Store::get_within`](kf_core::runtime::Store::get_within)) is not awaited
//! through a promise; the future is kept here, the entry is told to read the key within the
//! limit, and it hands the result to `resume`, which polls the same future again. The push is
//! opened once and carried across the read; no Rust executor or promise is involved (see
//! docs/performance.md). A future that waits on anything else (a timer, `fetch`) is handed to
//! the executor as it is.

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};

use kf_core::runtime::Late;
use kf_core::Error;

/// What a read gave: the value (`None`: absent), the store's failure, or [`Late`].
pub type Read = Result<Result<Option<String>, Error>, Late>;

/// Where a read's result goes when the entry has made it.
type Slot = Rc<RefCell<Option<Read>>>;

/// A read the entry is asked to make.
pub struct Wanted {
    pub key: String,
    pub within_ms: u64,
    slot: Slot,
}

/// A request's future, waiting for a read.
pub struct Waiting<F: ?Sized> {
    pub id: u32,
    pub future: Pin<Box<F>>,
    slot: Slot,
}

thread_local! {
    /// Set while [`drive`] polls: a read is then made by the entry.
    static DRIVING: Cell<bool> = const { Cell::new(false) };
    /// The read the current poll asked for.
    static WANTED: RefCell<Option<Wanted>> = const { RefCell::new(None) };
}

/// Requests waiting for a read in this isolate (a request whose client went away is never
/// resumed: past this many the oldest is dropped).
pub const MAX_WAITING: usize = 64;

/// A read of `key` the entry makes, if a request is being driven and has not asked for one yet:
/// the future of its result.
pub fn by_entry(key: &str, within_ms: u64) -> Option<SlotRead> {
    if !DRIVING.get() {
        return None;
    }
    WANTED.with(|wanted| {
        let mut wanted = wanted.borrow_mut();
        if wanted.is_some() {
            return None;
        }
        let slot = Slot::default();
        *wanted = Some(Wanted { key: key.to_string(), within_ms, slot: slot.clone() });
        Some(SlotRead(slot))
    })
}

/// The result of a read the entry makes: ready once [`resume`] has filled it.
pub struct SlotRead(Slot);

impl Future for SlotRead {
    type Output = Read;
    fn poll(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Read> {
        match self.0.borrow_mut().take() {
            Some(read) => Poll::Ready(read),
            None => Poll::Pending,
        }
    }
}

/// How one poll of a request's future ended.
pub enum Driven<F: Future + ?Sized> {
    Done(F::Output),
    /// It waits for a read by the entry.
    Read(Waiting<F>, Wanted),
    /// It waits on something else: the executor takes it from here.
    Pending(Pin<Box<F>>),
}

/// Polls `future` once with a waker that does nothing (its leaf futures take the waker of each
/// poll, so a later executor's polls wake it).
pub fn drive<F: Future + ?Sized>(mut future: Pin<Box<F>>, id: u32) -> Driven<F> {
    DRIVING.set(true);
    let poll = future.as_mut().poll(&mut Context::from_waker(Waker::noop()));
    DRIVING.set(false);
    let wanted = WANTED.with(|w| w.borrow_mut().take());
    match (poll, wanted) {
        (Poll::Ready(out), _) => Driven::Done(out),
        (Poll::Pending, Some(wanted)) => {
            let slot = wanted.slot.clone();
            Driven::Read(Waiting { id, future, slot }, wanted)
        }
        (Poll::Pending, None) => Driven::Pending(future),
    }
}

impl<F: Future + ?Sized> Waiting<F> {
    /// The read's result as the entry passes it: `"+"` and the value, `"-"` absent, `"~"` late,
    /// anything else (`"!"`) failed; then the future, to drive again.
    pub fn resume(self, read: &str) -> Pin<Box<F>> {
        let read = match read.split_at_checked(1) {
            Some(("+", value)) => Ok(Ok(Some(value.to_string()))),
            Some(("-", "")) => Ok(Ok(None)),
            Some(("~", "")) => Err(Late),
            _ => Ok(Err(Error::Internal("KV read failed"))),
        };
        *self.slot.borrow_mut() = Some(read);
        self.future
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A request that reads twice, the way the core's futures do.
    async fn two_reads() -> (Read, Read) {
        let first = match by_entry("rules:wx1", 1000) {
            Some(read) => read.await,
            None => Ok(Ok(None)),
        };
        let second = match by_entry("requested:wx1:o1", 1000) {
            Some(read) => read.await,
            None => Ok(Ok(None)),
        };
        (first, second)
    }

    #[test]
    fn a_read_suspends_the_request_and_the_entrys_result_resumes_it() {
        let Driven::Read(waiting, wanted) = drive(Box::pin(two_reads()), 7) else { panic!("no read asked") };
        assert_eq!((waiting.id, wanted.key.as_str(), wanted.within_ms), (7, "rules:wx1", 1000));
        let Driven::Read(waiting, wanted) = drive(waiting.resume("+{\"welcome\":\"hi\"}"), 7) else { panic!() };
        assert_eq!(wanted.key, "requested:wx1:o1");
        let Driven::Done((first, second)) = drive(waiting.resume("~"), 7) else { panic!("not done") };
        assert_eq!(first, Ok(Ok(Some("{\"welcome\":\"hi\"}".to_string()))));
        assert_eq!(second, Err(Late));
    }

    #[test]
    fn the_entrys_read_results() {
        for (given, read) in [
            ("+", Ok(Ok(Some(String::new())))),
            ("+x", Ok(Ok(Some("x".to_string())))),
            ("-", Ok(Ok(None))),
            ("~", Err(Late)),
            ("!", Ok(Err(Error::Internal("KV read failed")))),
            ("", Ok(Err(Error::Internal("KV read failed")))),
            ("-junk", Ok(Err(Error::Internal("KV read failed")))),
        ] {
            let Driven::Read(waiting, _) = drive(Box::pin(two_reads()), 1) else { panic!() };
            let Driven::Read(waiting, _) = drive(waiting.resume(given), 1) else { panic!() };
            let Driven::Done((first, _)) = drive(waiting.resume("-"), 1) else { panic!() };
            assert_eq!(first, read, "{given:?}");
        }
    }

    #[test]
    fn outside_a_drive_reads_are_not_the_entrys() {
        assert!(by_entry("rules:wx1", 1000).is_none());
    }
}
