//! GPU timing from the GPU: timestamp queries at the beginning and end of compute passes,
//! beside the host's own clock.
//!
//! Wall-clock time around a submission measures the host too (recording, submitting, waiting
//! and waking up). Where the adapter has timestamp queries ([`DeviceInfo::timestamps`]) a
//! [`PassTimer`] has the device write a timestamp as each compute pass begins and ends; the
//! span from the first begin to the last end is the time the device spent on the work, and
//! the sum of the pass durations is the time it spent inside kernels (copies between passes
//! excluded). The query set and its two buffers are created once and reused for every
//! submission, so timing adds three commands to a recording and nothing to the hot path.
//!
//! ```no_run
//! use eigengrad::profile::{time_pass, PassTimer};
//! # fn main() -> eigengrad::Result<()> {
//! # let device = eigengrad::Device::new()?;
//! # let dispatch: eigengrad::kernels::Dispatch = unimplemented!();
//! let timer = PassTimer::new(&device, 1)?; // None where the adapter has no timestamps
//! let profile = time_pass(&device, timer.as_ref(), 1, |pass| dispatch.record(pass))?;
//! println!("{:.3} ms on the device, {:.3} ms wall", profile.gpu_ms.unwrap_or(f64::NAN), profile.wall_ms);
//! # Ok(()) }
//! ```
//!
//! [`DeviceInfo::timestamps`]: crate::DeviceInfo::timestamps

use crate::device::Device;
use crate::error::{Error, Result};
use std::time::Instant;

/// Timestamp queries for up to `passes` compute passes of one submission: a query set of two
/// timestamps per pass, the buffer they resolve into and a mappable copy, created once.
pub struct PassTimer {
    device: Device,
    set: wgpu::QuerySet,
    resolve: wgpu::Buffer,
    readback: wgpu::Buffer,
    passes: u32,
}

impl std::fmt::Debug for PassTimer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PassTimer({} passes)", self.passes)
    }
}

/// Timestamps of the passes of one submission, in nanoseconds from the first pass's begin.
#[derive(Clone, Debug, PartialEq)]
pub struct PassTimes {
    /// (begin, end) of each pass, in recording order.
    pub passes: Vec<(f64, f64)>,
}

impl PassTimes {
    /// Milliseconds from the first pass's begin to the last pass's end: the device's time for
    /// the whole submission, copies between passes included.
    pub fn span_ms(&self) -> f64 {
        let end = self.passes.iter().map(|p| p.1).fold(0.0, f64::max);
        end / 1e6
    }

    /// Milliseconds inside passes, summed over the passes: kernel time without the copies.
    pub fn busy_ms(&self) -> f64 {
        self.passes
            .iter()
            .map(|p| (p.1 - p.0).max(0.0))
            .sum::<f64>()
            / 1e6
    }
}

/// What one timed submission cost, on the host and on the device.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct StepProfile {
    /// Host microseconds spent writing inputs and parameters words (`queue.write_buffer`).
    pub host_upload_us: f64,
    /// Host microseconds spent recording every pass into the command encoder (until
    /// `finish`): the per-step overhead of the executor, independent of the adapter's speed.
    pub host_record_us: f64,
    /// Host microseconds inside `queue.submit`. On a CPU adapter such as lavapipe the device
    /// starts on the same cores while the call returns, so this one can include contention.
    pub host_submit_us: f64,
    /// Milliseconds from the start of the step until the device had finished it.
    pub wall_ms: f64,
    /// Device milliseconds from the first pass's begin to the last pass's end, from timestamp
    /// queries; `None` where the adapter has none.
    pub gpu_ms: Option<f64>,
    /// Device milliseconds inside compute passes (the sum of their durations); `None` where
    /// the adapter has no timestamp queries.
    pub gpu_busy_ms: Option<f64>,
    /// Kernel launches recorded.
    pub dispatches: usize,
    /// Compute passes recorded.
    pub passes: usize,
}

impl StepProfile {
    /// Host microseconds of recording per kernel launch.
    pub fn host_us_per_dispatch(&self) -> f64 {
        self.host_record_us / self.dispatches.max(1) as f64
    }
}

impl PassTimer {
    /// The most passes one timer covers (wgpu allows 4096 queries per set, two per pass).
    pub const MAX_PASSES: usize = wgpu::QUERY_SET_MAX_QUERIES as usize / 2;

    /// A timer for submissions of up to `passes` compute passes, or `None` where the device
    /// has no timestamp queries or `passes` is 0 or over [`Self::MAX_PASSES`].
    pub fn new(device: &Device, passes: usize) -> Result<Option<PassTimer>> {
        if !device.info().timestamps || passes == 0 || passes > Self::MAX_PASSES {
            return Ok(None);
        }
        let queries = 2 * passes as u32;
        let bytes = queries as u64 * 8;
        device.check_buffer_size("timestamp queries", bytes)?;
        let _gl = device.gl_guard();
        let wd = device.wgpu_device();
        let set = wd.create_query_set(&wgpu::QuerySetDescriptor {
            label: Some("pass timestamps"),
            ty: wgpu::QueryType::Timestamp,
            count: queries,
        });
        let resolve = wd.create_buffer(&wgpu::BufferDescriptor {
            label: Some("timestamp resolve"),
            size: bytes,
            usage: wgpu::BufferUsages::QUERY_RESOLVE | wgpu::BufferUsages::COPY_SRC,
            mapped_at_creation: false,
        });
        let readback = wd.create_buffer(&wgpu::BufferDescriptor {
            label: Some("timestamp readback"),
            size: bytes,
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        device.take_error()?;
        Ok(Some(PassTimer {
            device: device.clone(),
            set,
            resolve,
            readback,
            passes: passes as u32,
        }))
    }

    /// The number of passes this timer covers.
    pub fn passes(&self) -> usize {
        self.passes as usize
    }

    /// The timestamp writes for pass `pass` (counted from 0 in recording order) of a compute
    /// pass descriptor; `None` past the passes this timer covers (that pass goes untimed).
    pub fn writes(&self, pass: usize) -> Option<wgpu::ComputePassTimestampWrites<'_>> {
        let pass = u32::try_from(pass).ok().filter(|&p| p < self.passes)?;
        Some(wgpu::ComputePassTimestampWrites {
            query_set: &self.set,
            beginning_of_pass_write_index: Some(2 * pass),
            end_of_pass_write_index: Some(2 * pass + 1),
        })
    }

    /// Records, after the last timed pass, the resolution of the timestamps of the first
    /// `passes` passes (at most [`Self::passes`]; each must have been recorded with
    /// [`Self::writes`] in this encoder) and their copy into the mappable buffer.
    pub fn resolve(&self, encoder: &mut wgpu::CommandEncoder, passes: usize) {
        let queries = 2 * (passes.min(self.passes as usize) as u32);
        if queries > 0 {
            encoder.resolve_query_set(&self.set, 0..queries, &self.resolve, 0);
            encoder.copy_buffer_to_buffer(&self.resolve, 0, &self.readback, 0, queries as u64 * 8);
        }
    }

    /// Reads the timestamps of the first `passes` passes of the last submission that called
    /// [`Self::resolve`] (waits for it), converted to nanoseconds with the queue's timestamp
    /// period.
    pub fn read(&self, passes: usize) -> Result<PassTimes> {
        let passes = passes.min(self.passes as usize);
        if passes == 0 {
            return Ok(PassTimes { passes: Vec::new() });
        }
        let slice = self.readback.slice(..passes as u64 * 16);
        let (sender, receiver) = futures_intrusive::channel::shared::oneshot_channel();
        slice.map_async(wgpu::MapMode::Read, move |r| {
            let _ = sender.send(r);
        });
        self.device.synchronize()?;
        pollster::block_on(receiver.receive())
            .ok_or_else(|| Error::Device("timestamps: map_async callback was dropped".into()))?
            .map_err(|e| Error::Device(format!("timestamps: {e}")))?;
        let ticks: Vec<u64> = {
            let view = slice
                .get_mapped_range()
                .map_err(|e| Error::Device(format!("timestamps: {e}")))?;
            bytemuck::cast_slice(&view).to_vec()
        };
        self.readback.unmap();
        let period = self.device.queue().get_timestamp_period() as f64;
        let origin = ticks.iter().step_by(2).copied().min().unwrap_or(0);
        let ns = |t: u64| t.saturating_sub(origin) as f64 * period;
        Ok(PassTimes {
            passes: ticks
                .chunks_exact(2)
                .map(|p| (ns(p[0]), ns(p[1])))
                .collect(),
        })
    }
}

/// Records one compute pass with `record` (which launches `dispatches` kernels), submits it,
/// waits for it and reports its cost: host time to record and submit, wall time until the
/// device finished, and — with a timer — the device's own time for the pass. Work queued
/// earlier is waited for first, so the figures belong to this pass alone. For benchmarks of
/// single kernels or solver plans.
pub fn time_pass(
    device: &Device,
    timer: Option<&PassTimer>,
    dispatches: usize,
    record: impl FnOnce(&mut wgpu::ComputePass<'_>),
) -> Result<StepProfile> {
    let _gl = device.gl_guard();
    device.synchronize()?;
    let start = Instant::now();
    let mut encoder =
        device
            .wgpu_device()
            .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                label: Some("timed pass"),
            });
    {
        let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
            label: Some("timed pass"),
            timestamp_writes: timer.and_then(|t| t.writes(0)),
        });
        record(&mut pass);
    }
    if let Some(t) = timer {
        t.resolve(&mut encoder, 1);
    }
    let commands = encoder.finish();
    let recorded = Instant::now();
    let index = device.queue().submit([commands]);
    let submitted = Instant::now();
    wait_for(device, index)?;
    let finished = Instant::now();
    let times = timer.map(|t| t.read(1)).transpose()?;
    Ok(StepProfile {
        host_upload_us: 0.0,
        host_record_us: (recorded - start).as_secs_f64() * 1e6,
        host_submit_us: (submitted - recorded).as_secs_f64() * 1e6,
        wall_ms: (finished - start).as_secs_f64() * 1e3,
        gpu_ms: times.as_ref().map(PassTimes::span_ms),
        gpu_busy_ms: times.as_ref().map(PassTimes::busy_ms),
        dispatches,
        passes: 1,
    })
}

/// Blocks until submission `index` has finished, then returns the first device error.
pub(crate) fn wait_for(device: &Device, index: wgpu::SubmissionIndex) -> Result<()> {
    let _gl = device.gl_guard();
    device
        .wgpu_device()
        .poll(wgpu::PollType::Wait {
            submission_index: Some(index),
            timeout: None,
        })
        .map_err(|e| Error::Device(format!("poll: {e}")))?;
    device.take_error()
}
