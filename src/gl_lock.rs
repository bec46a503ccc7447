//! One process-wide lock around work on GL devices.
//!
//! wgpu's GL backend guards its context with a lock that panics after waiting 6 s ("Could not
//! lock adapter context"). A pipeline build or a long submission on llvmpipe holds the context
//! longer than that, so several threads using GL devices at once (e.g. `cargo test`) would
//! panic. Every place in the crate that creates, submits, polls, maps or releases device
//! resources therefore takes this lock first when the device is a GL one: waiting threads
//! queue here, without a timeout, instead of in wgpu. The lock is reentrant, so functions that
//! hold it may call each other. Other backends never take it.

use parking_lot::{const_reentrant_mutex, ReentrantMutex, ReentrantMutexGuard};
use std::mem::ManuallyDrop;
use std::ops::Deref;

static GL: ReentrantMutex<()> = const_reentrant_mutex(());

/// Held while a GL device is in use by this thread; `None` on other backends.
pub(crate) type GlGuard = Option<ReentrantMutexGuard<'static, ()>>;

/// Takes the lock if `gl`.
pub(crate) fn lock(gl: bool) -> GlGuard {
    gl.then(|| GL.lock())
}

/// A device resource (buffer, bind group) whose release runs under the lock: dropping the last
/// handle of a buffer deletes it in the GL context.
pub(crate) struct GlDrop<T> {
    value: ManuallyDrop<T>,
    gl: bool,
}

impl<T> GlDrop<T> {
    /// Wraps `value`, released under the lock if `gl`.
    pub(crate) fn new(value: T, gl: bool) -> GlDrop<T> {
        GlDrop {
            value: ManuallyDrop::new(value),
            gl,
        }
    }
}

impl<T> Deref for GlDrop<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.value
    }
}

impl<T: std::fmt::Debug> std::fmt::Debug for GlDrop<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.value.fmt(f)
    }
}

impl<T> Drop for GlDrop<T> {
    fn drop(&mut self) {
        let _gl = lock(self.gl);
        // SAFETY: `value` is dropped exactly once, here, and never used afterwards.
        unsafe { ManuallyDrop::drop(&mut self.value) }
    }
}
