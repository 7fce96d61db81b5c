//! [`Communicator`]: the collective operations data-parallel training needs, each with a
//! deadline, on a private duplicate of an MPI communicator.
//!
//! Why not rsmpi's blocking collectives: a blocking `MPI_Allreduce` whose partner has died or
//! taken another path waits forever, and rsmpi's non-blocking requests must complete before
//! their scope ends (or the process aborts). Here every operation is started non-blocking on
//! buffers the communicator owns, polled with `MPI_Test` until it completes or the timeout
//! passes, and a timeout becomes an [`Error::Distributed`]; the buffers of an operation that
//! never completed are leaked on purpose, so MPI can never write into freed memory. The
//! duplicate communicator returns MPI errors (`MPI_ERRORS_RETURN`) instead of aborting, and
//! each return code is checked.

use crate::collective::Collective;
use crate::error::{Error, Result};
use crate::tensor::Float;
use mpi::datatype::Equivalence;
use mpi::environment::Threading;
use mpi::ffi;
use mpi::topology::SimpleCommunicator;
use mpi::traits::{AsRaw, Communicator as _};
use std::ffi::{c_int, c_void};
use std::mem::ManuallyDrop;
use std::sync::Mutex;
use std::thread::ThreadId;
use std::time::{Duration, Instant};

/// The default time a collective operation may wait for the other processes.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(300);

/// A group of MPI processes with deadline-bounded collectives (sum all-reduce, broadcast,
/// barrier) on a private duplicate of the communicator it was made from.
///
/// All processes must call the same operations in the same order. An operation that does not
/// complete within the timeout (default [`DEFAULT_TIMEOUT`], see
/// [`Communicator::set_timeout`]) returns [`Error::Distributed`], and so does every later
/// one: the group is then broken and the job should end with [`Communicator::abort`].
pub struct Communicator {
    comm: ManuallyDrop<SimpleCommunicator>,
    rank: usize,
    size: usize,
    timeout: Mutex<Duration>,
    owner: ThreadId,
    any_thread: bool,
    /// The first failure; once set, every operation fails with it.
    broken: Mutex<Option<String>>,
    /// Serialises this communicator's MPI calls (MPI_THREAD_SERIALIZED needs no more).
    calls: Mutex<()>,
}

// SAFETY: an MPI communicator handle is a process-wide identifier that MPI lets any thread use
// when the library was initialised with MPI_THREAD_SERIALIZED or more, provided calls do not
// overlap. Every MPI call of a `Communicator` holds the `calls` mutex (no overlap), and when
// the library gives less than MPI_THREAD_SERIALIZED every call first checks that it runs on the
// thread that built the communicator (`check_thread`), failing with an error otherwise. So
// moving or sharing a `Communicator` between threads cannot make MPI calls from two threads at
// once or from a thread MPI does not allow. the `threads` scenario of
// tests/distributed.rs exercises the check.
unsafe impl Send for Communicator {}
// SAFETY: as for `Send` above; `&Communicator` methods serialise their MPI calls.
unsafe impl Sync for Communicator {}

impl std::fmt::Debug for Communicator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Communicator")
            .field("rank", &self.rank)
            .field("size", &self.size)
            .finish_non_exhaustive()
    }
}

impl Communicator {
    /// A communicator over the same processes as `comm` (usually `universe.world()`), on a
    /// duplicate of it so its traffic never mixes with the caller's own messages.
    pub fn new(comm: &impl mpi::traits::Communicator) -> Result<Self> {
        let dup = comm.duplicate();
        let rank = usize::try_from(dup.rank())
            .map_err(|_| Error::Distributed("MPI returned a negative rank".into()))?;
        let size = usize::try_from(dup.size())
            .map_err(|_| Error::Distributed("MPI returned a negative size".into()))?;
        // SAFETY: `dup` is a valid communicator (just duplicated) and ERRORS_RETURN a valid
        // predefined error handler; the call only changes how errors on `dup` are reported.
        let rc = unsafe { ffi::MPI_Comm_set_errhandler(dup.as_raw(), ffi::RSMPI_ERRORS_RETURN) };
        let this = Communicator {
            comm: ManuallyDrop::new(dup),
            rank,
            size,
            timeout: Mutex::new(DEFAULT_TIMEOUT),
            owner: std::thread::current().id(),
            any_thread: mpi::environment::threading_support() >= Threading::Serialized,
            broken: Mutex::new(None),
            calls: Mutex::new(()),
        };
        check(rc, "MPI_Comm_set_errhandler")?;
        Ok(this)
    }

    /// This process's rank, `0..size()`.
    pub fn rank(&self) -> usize {
        self.rank
    }

    /// The number of processes.
    pub fn size(&self) -> usize {
        self.size
    }

    /// The time any one operation may wait for the other processes before it fails.
    pub fn timeout(&self) -> Duration {
        *lock(&self.timeout)
    }

    /// Sets the timeout of every later operation (at least one millisecond).
    pub fn set_timeout(&self, timeout: Duration) {
        *lock(&self.timeout) = timeout.max(Duration::from_millis(1));
    }

    /// The error that broke the group, if an operation failed.
    pub fn failure(&self) -> Option<String> {
        lock(&self.broken).clone()
    }

    /// Ends every process of the job with exit code `code` (`MPI_Abort`). The way out after
    /// an [`Error::Distributed`]: the other processes may be waiting in an operation this
    /// one will never join.
    pub fn abort(&self, code: i32) -> ! {
        self.comm.abort(code)
    }

    /// Element-wise sum over the processes of `send`, in place (`send` becomes the sum).
    pub fn all_reduce_sum<T: Float>(&self, values: &mut [T]) -> Result<()> {
        let whole = std::slice::from_ref(&(0..values.len())).to_vec();
        let send = values.to_vec();
        let recv = vec![T::zero(); values.len()];
        let (_, recv) = self.all_reduce_sum_ranges(send, recv, &whole)?;
        values.copy_from_slice(&recv);
        Ok(())
    }

    /// Sums `send` over the processes into `recv` (same length), one `MPI_Iallreduce` per
    /// range of `ranges` (the buckets), all in flight at once. Returns both buffers for reuse.
    pub(crate) fn all_reduce_sum_ranges<T: Float>(
        &self,
        send: Vec<T>,
        mut recv: Vec<T>,
        ranges: &[std::ops::Range<usize>],
    ) -> Result<(Vec<T>, Vec<T>)> {
        if recv.len() != send.len() || ranges.iter().any(|r| r.end > send.len()) {
            return Err(Error::input(
                "Communicator::all_reduce_sum",
                format!(
                    "buffers of {} and {} values, ranges up to {}",
                    send.len(),
                    recv.len(),
                    ranges.iter().map(|r| r.end).max().unwrap_or(0)
                ),
            ));
        }
        let _calls = self.enter("all-reduce")?;
        let datatype = datatype_of::<T>();
        let mut requests = Vec::with_capacity(ranges.len());
        for range in ranges {
            let count = count_of(range.len())?;
            let mut request = null_request();
            // SAFETY: both pointers address `range.len()` values of `T` inside `send` and
            // `recv` (bounds checked above); the datatype matches `T`; `send` and `recv` are
            // owned here and either returned after every request completed or leaked by
            // `wait_all` on failure, so MPI never touches freed memory.
            let rc = unsafe {
                ffi::MPI_Iallreduce(
                    send.as_ptr().add(range.start) as *const c_void,
                    recv.as_mut_ptr().add(range.start) as *mut c_void,
                    count,
                    datatype,
                    ffi::RSMPI_SUM,
                    self.comm.as_raw(),
                    &mut request,
                )
            };
            if let Err(e) = check(rc, "MPI_Iallreduce") {
                return self.fail_leaking(e, (send, recv), requests);
            }
            requests.push(request);
        }
        match self.wait_all(&mut requests, "all-reduce") {
            Ok(()) => Ok((send, recv)),
            Err(e) => self.fail_leaking(e, (send, recv), requests),
        }
    }

    /// Returns process `root`'s `values` on every process.
    pub fn broadcast<T: Float>(&self, values: Vec<T>, root: usize) -> Result<Vec<T>> {
        self.broadcast_raw(values, root, datatype_of::<T>())
    }

    /// A barrier: returns once every process has entered it.
    pub fn barrier(&self) -> Result<()> {
        let _calls = self.enter("barrier")?;
        let mut request = null_request();
        // SAFETY: a barrier carries no buffer; `request` is a valid place for the handle.
        let rc = unsafe { ffi::MPI_Ibarrier(self.comm.as_raw(), &mut request) };
        check(rc, "MPI_Ibarrier")?;
        let mut requests = vec![request];
        match self.wait_all(&mut requests, "barrier") {
            Ok(()) => Ok(()),
            Err(e) => self.fail_leaking(e, (), requests),
        }
    }

    fn broadcast_raw<X>(
        &self,
        mut values: Vec<X>,
        root: usize,
        datatype: ffi::MPI_Datatype,
    ) -> Result<Vec<X>> {
        if root >= self.size {
            return Err(Error::input(
                "Communicator::broadcast",
                format!("root {root} is not a rank of a group of {}", self.size),
            ));
        }
        let _calls = self.enter("broadcast")?;
        let count = count_of(values.len())?;
        let mut request = null_request();
        // SAFETY: the pointer addresses `values.len()` elements of the type `datatype`
        // describes (callers pass the datatype of `X`); `values` is owned here and returned
        // only after the request completed, or leaked on failure.
        let rc = unsafe {
            ffi::MPI_Ibcast(
                values.as_mut_ptr() as *mut c_void,
                count,
                datatype,
                root as c_int,
                self.comm.as_raw(),
                &mut request,
            )
        };
        if let Err(e) = check(rc, "MPI_Ibcast") {
            return self.fail_leaking(e, values, Vec::new());
        }
        let mut requests = vec![request];
        match self.wait_all(&mut requests, "broadcast") {
            Ok(()) => Ok(values),
            Err(e) => self.fail_leaking(e, values, requests),
        }
    }

    /// Checks the group is usable from this thread and takes the call lock.
    fn enter(&self, what: &str) -> Result<std::sync::MutexGuard<'_, ()>> {
        if let Some(why) = self.failure() {
            return Err(Error::Distributed(format!(
                "{what} refused: the process group broke earlier ({why})"
            )));
        }
        if !self.any_thread && std::thread::current().id() != self.owner {
            return Err(Error::Distributed(format!(
                "{what} called from a thread other than the one that made the communicator; \
                 initialise MPI with Threading::Serialized or more to allow that"
            )));
        }
        Ok(lock(&self.calls))
    }

    /// Polls `requests` until all complete or the timeout passes.
    fn wait_all(&self, requests: &mut [ffi::MPI_Request], what: &str) -> Result<()> {
        let timeout = self.timeout();
        let start = Instant::now();
        let mut polls = 0u64;
        loop {
            let mut done = true;
            for request in requests.iter_mut() {
                if is_null(*request) {
                    continue;
                }
                let mut flag: c_int = 0;
                // SAFETY: `request` is a handle MPI returned (or the null request, skipped
                // above); MPI_Test sets it to the null request when the operation completed.
                let rc = unsafe { ffi::MPI_Test(request, &mut flag, ffi::RSMPI_STATUS_IGNORE) };
                check(rc, what)?;
                if flag == 0 {
                    done = false;
                }
            }
            if done {
                return Ok(());
            }
            polls += 1;
            let waited = start.elapsed();
            if waited >= timeout {
                return Err(Error::Distributed(format!(
                    "{what} on rank {} of {} did not complete within {:.1} s: another process \
                     crashed, hangs or skipped the operation",
                    self.rank,
                    self.size,
                    timeout.as_secs_f64()
                )));
            }
            // MPI moves a large message in fragments only while it is polled, so keep polling:
            // spin briefly, then yield the core between polls (other processes may need it),
            // and only sleep once the partner is clearly busy elsewhere (a second: process 0
            // evaluating or writing a checkpoint).
            if waited > Duration::from_secs(1) {
                std::thread::sleep(Duration::from_millis(1));
            } else if polls > 100 {
                std::thread::yield_now();
            } else {
                std::hint::spin_loop();
            }
        }
    }

    /// Records `error` as the group's failure and leaks `buffers` (which pending `requests`
    /// may still write into) before returning the error.
    fn fail_leaking<B, R>(
        &self,
        error: Error,
        buffers: B,
        requests: Vec<ffi::MPI_Request>,
    ) -> Result<R> {
        if requests.iter().any(|r| !is_null(*r)) {
            std::mem::forget(buffers);
        }
        let mut broken = lock(&self.broken);
        if broken.is_none() {
            *broken = Some(error.to_string());
        }
        Err(error)
    }
}

impl Drop for Communicator {
    fn drop(&mut self) {
        // A broken group may have operations in flight on the communicator: leave it to the
        // end of the process rather than free it under them. After MPI_Finalize (the
        // `Universe` dropped first) freeing it is an error MPI may abort on: leave it too.
        if self.failure().is_none() && !mpi::environment::is_finalized() {
            // SAFETY: `comm` is not used again; ManuallyDrop::drop runs its destructor once.
            unsafe { ManuallyDrop::drop(&mut self.comm) };
        }
    }
}

impl Collective for Communicator {
    fn rank(&self) -> usize {
        self.rank
    }

    fn size(&self) -> usize {
        self.size
    }

    fn all_reduce_sum(&self, values: &mut [f64]) -> Result<()> {
        Communicator::all_reduce_sum(self, values)
    }

    fn broadcast_bytes(&self, bytes: Vec<u8>, root: usize) -> Result<Vec<u8>> {
        let len = self.broadcast_raw(vec![bytes.len() as u64], root, raw_type::<u64>())?;
        let len = len.first().copied().unwrap_or_default();
        let len = usize::try_from(len)
            .map_err(|_| Error::Distributed(format!("broadcast of {len} bytes")))?;
        let buffer = if self.rank == root {
            bytes
        } else {
            let mut b = Vec::new();
            b.try_reserve_exact(len).map_err(|_| {
                Error::Distributed(format!("cannot allocate a broadcast of {len} bytes"))
            })?;
            b.resize(len, 0u8);
            b
        };
        self.broadcast_raw(buffer, root, raw_type::<u8>())
    }
}

fn lock<V>(m: &Mutex<V>) -> std::sync::MutexGuard<'_, V> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn raw_type<X: Equivalence>() -> ffi::MPI_Datatype {
    X::equivalent_datatype().as_raw()
}

fn datatype_of<T: Float>() -> ffi::MPI_Datatype {
    if T::DTYPE == "F32" {
        raw_type::<f32>()
    } else {
        raw_type::<f64>()
    }
}

fn count_of(len: usize) -> Result<c_int> {
    c_int::try_from(len).map_err(|_| {
        Error::Distributed(format!(
            "a message of {len} values is more than MPI's count limit of {}",
            c_int::MAX
        ))
    })
}

fn null_request() -> ffi::MPI_Request {
    // SAFETY: reads a constant handle the MPI library initialised at load time.
    unsafe { ffi::RSMPI_REQUEST_NULL }
}

fn is_null(request: ffi::MPI_Request) -> bool {
    request == null_request()
}

/// Turns an MPI return code into an error naming the call and MPI's own explanation.
fn check(rc: c_int, what: &str) -> Result<()> {
    if rc == 0 {
        return Ok(());
    }
    let mut text = vec![0u8; 1024];
    let mut len: c_int = 0;
    // SAFETY: `text` has room for MPI_MAX_ERROR_STRING (256 in Open MPI and MPICH) bytes;
    // MPI writes at most that and its length into `len`.
    let ok = unsafe { ffi::MPI_Error_string(rc, text.as_mut_ptr() as *mut _, &mut len) } == 0;
    let message = if ok {
        let written = text.get(..len.max(0) as usize).unwrap_or(&text);
        String::from_utf8_lossy(written).into_owned()
    } else {
        format!("error code {rc}")
    };
    Err(Error::Distributed(format!("{what} failed: {message}")))
}
