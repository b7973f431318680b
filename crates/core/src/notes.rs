//! What happened on the way, for the request's log line: what ran, what was skipped and why,
//! what failed. Never message text, a token, a secret or a webhook URL.

use std::cell::RefCell;

/// A request's notes, shared by the work it starts (also after the reply).
#[derive(Debug, Default)]
pub struct Notes(RefCell<Vec<String>>);

impl Notes {
    pub fn add(&self, note: impl Into<String>) {
        self.0.borrow_mut().push(note.into());
    }

    /// The notes so far (emptied).
    pub fn take(&self) -> Vec<String> {
        std::mem::take(&mut *self.0.borrow_mut())
    }
}
