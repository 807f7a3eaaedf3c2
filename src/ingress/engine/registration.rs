//! The one `unsafe` of the crate: registering a source with a `polling::Poller`.

use std::io;
use std::net::{TcpListener, TcpStream, UdpSocket};
use std::ops::Deref;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::net::{UnixDatagram, UnixListener, UnixStream};
use std::sync::Arc;

use polling::{Event, PollMode, Poller};

/// What a [`Registration`] may hold: the standard library's sockets (TCP, UDP, Unix) and
/// owned descriptors, alone or in an `Arc`. Sealed: the guard's safety rests on `as_fd`
/// naming one descriptor for the value's whole life, which these types promise.
pub trait Source: AsFd + sealed::Sealed {}

mod sealed {
    pub trait Sealed {}
}

macro_rules! sources {
    ($($t:ty),*) => {$(
        impl sealed::Sealed for $t {}
        impl Source for $t {}
    )*};
}

sources!(
    TcpStream,
    TcpListener,
    UdpSocket,
    UnixStream,
    UnixListener,
    UnixDatagram,
    OwnedFd
);

impl<T: Source> sealed::Sealed for Arc<T> {}
impl<T: Source> Source for Arc<T> {}

/// A source (a socket) registered with a [`Poller`], level-triggered; deleted from the poller
/// when the guard is dropped, before the source is.
///
/// `Poller::add` is `unsafe` because a source closed while still registered leaves the
/// poller reporting events for a descriptor number that the OS may already have given to
/// another file. The guard makes that impossible: it owns the source, so the source can only
/// be closed by dropping the guard, and the guard's `Drop` deletes it from the poller first.
/// This is the crate's only `unsafe` code; the connection engine registers every socket
/// through it, and so can code outside the crate (a load-test client on its own poller).
///
/// `P` is how the guard holds the poller: an `Arc<Poller>` (the default) or a `&Poller`
/// that outlives it. The source is lent only by shared reference (`&TcpStream` and
/// `&UdpSocket` read and write): a mutable one would let it be swapped out and closed while
/// registered. Keep a connection's other state beside the guard.
///
/// # Examples
///
/// ```
/// use reactorium::engine::polling::{Event, Events, Poller};
/// use reactorium::engine::Registration;
/// use std::io::Write;
/// use std::net::{TcpListener, TcpStream};
/// use std::sync::Arc;
/// use std::time::Duration;
///
/// let poller = Arc::new(Poller::new()?);
/// let listener = TcpListener::bind("127.0.0.1:0")?;
/// listener.set_nonblocking(true)?;
/// let addr = listener.local_addr()?;
/// let listener = Registration::new(Arc::clone(&poller), listener, Event::readable(7))?;
///
/// let mut client = TcpStream::connect(addr)?;
/// client.write_all(b"hi")?;
/// let mut events = Events::new();
/// poller.wait(&mut events, Some(Duration::from_secs(5)))?;
/// assert_eq!(events.iter().next().map(|e| e.key), Some(7));
/// let (_stream, _) = listener.source().accept()?;
/// drop(listener); // deleted from the poller, then closed
/// # Ok::<(), std::io::Error>(())
/// ```
pub struct Registration<S: Source, P: Deref<Target = Poller> = Arc<Poller>> {
    poller: P,
    source: S,
}

impl<S: Source, P: Deref<Target = Poller>> Registration<S, P> {
    /// Registers `source` with `poller` for `interest`, level-triggered (an event comes back
    /// on every wait while the source stays ready).
    ///
    /// # Errors
    ///
    /// What `epoll_ctl` (or the platform's equivalent) answers, such as `ENOMEM`; the source
    /// is then dropped (closed).
    #[allow(unsafe_code)]
    pub fn new(poller: P, source: S, interest: Event) -> io::Result<Registration<S, P>> {
        let fd = source.as_fd().as_raw_fd();
        // SAFETY: `Poller::add` requires the source to be deleted from the poller before it
        // is closed. The guard owns `source` (directly, or through an `Arc` that keeps the
        // descriptor open), gives it out only by shared reference (never by value or
        // mutably, so it cannot be swapped out), and its `Drop` deletes it from the poller
        // before the fields, and so the source, are dropped. `Source` is sealed to the
        // standard library's sockets and descriptors, whose `as_fd` always names the same
        // descriptor and which cannot be closed through a shared reference. If `add` fails,
        // nothing was registered.
        unsafe { poller.add_with_mode(fd, interest, PollMode::Level)? };
        Ok(Registration { poller, source })
    }

    /// Changes the interest (and the event's key).
    ///
    /// # Errors
    ///
    /// What `epoll_ctl` answers; not expected for a registered source.
    pub fn modify(&self, interest: Event) -> io::Result<()> {
        self.poller
            .modify_with_mode(self.source.as_fd(), interest, PollMode::Level)
    }

    /// The source.
    pub fn source(&self) -> &S {
        &self.source
    }

    /// The poller it is registered with.
    pub fn poller(&self) -> &Poller {
        &self.poller
    }
}

impl<S: Source, P: Deref<Target = Poller>> Drop for Registration<S, P> {
    fn drop(&mut self) {
        let _ = self.poller.delete(self.source.as_fd());
    }
}

impl<S: Source + std::fmt::Debug, P: Deref<Target = Poller>> std::fmt::Debug
    for Registration<S, P>
{
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registration")
            .field("source", &self.source)
            .finish()
    }
}
