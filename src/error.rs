//! The one error type of the crate: every fallible public function returns `Result<_, Error>`.

/// Everything a caller can cause or meet, each with a message that says what and where.
///
/// `Debug` shows the same message as `Display`, so `fn main() -> eigengrad::Result<()>`
/// prints it (with the install hint of [`Error::NoAdapter`]) rather than the variant's
/// fields.
#[derive(thiserror::Error)]
pub enum Error {
    /// No GPU adapter (or none of the requested backend) could be found.
    #[error(
        "no GPU adapter found{backend_hint}: install a GPU driver, or on Linux without a GPU \
         install Mesa's lavapipe CPU Vulkan driver (Debian/Ubuntu: `apt-get install mesa-vulkan-drivers libvulkan1`)"
    )]
    NoAdapter {
        /// Which backend was asked for, e.g. " for backend vulkan" (empty for auto).
        backend_hint: String,
    },
    /// Shapes that do not fit together, or a data length that does not match a shape.
    #[error("shape error in {op}: {detail}")]
    Shape {
        /// The operation or function that rejected the shapes.
        op: String,
        /// The shapes involved and what was expected.
        detail: String,
    },
    /// A tensor with no elements (a zero dimension or an empty shape).
    #[error("empty tensor in {op}: shape {shape:?} has no elements")]
    Empty {
        /// The operation or function that rejected the shape.
        op: String,
        /// The shape that has no elements.
        shape: Vec<usize>,
    },
    /// A buffer or dispatch larger than the device allows.
    #[error("{what} needs {requested}, over the device limit {limit_name} = {limit}")]
    TooLarge {
        /// What was being created.
        what: String,
        /// The requested amount (bytes or elements, as the limit counts).
        requested: u64,
        /// The wgpu limit that was exceeded.
        limit_name: &'static str,
        /// The value of that limit on this device.
        limit: u64,
    },
    /// NaN or Inf where an operation requires finite input.
    #[error("non-finite value (NaN or Inf) in {what} at index {index}")]
    NonFinite {
        /// The tensor, op or layer the value was found in.
        what: String,
        /// The first offending index (flat element index or batch index, as `what` says).
        index: u64,
    },
    /// A bad argument that is not a shape: an unknown backend name, a negative tolerance...
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// The device reported an error (validation, out of memory, lost device).
    #[error("device error: {0}")]
    Device(String),
    /// An I/O error, with the file it concerns.
    #[error("I/O error on {path}: {source}")]
    Io {
        /// The file being read or written.
        path: String,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A file whose contents are not what they should be (truncated, wrong magic, mismatched).
    #[error("bad file {path}: {detail}")]
    BadFile {
        /// The file.
        path: String,
        /// What is wrong with it.
        detail: String,
    },
}

impl std::fmt::Debug for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(self, f)
    }
}

/// Shorthand for `std::result::Result<T, eigengrad::Error>`.
pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    /// A [`Error::Shape`] for `op` with a formatted detail.
    pub(crate) fn shape(op: &str, detail: impl Into<String>) -> Self {
        Error::Shape {
            op: op.to_string(),
            detail: detail.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What `fn main() -> Result<()>` prints on an error is its `Debug`: the message itself.
    #[test]
    fn debug_is_the_message() {
        let e = Error::NoAdapter {
            backend_hint: " for backend vulkan".into(),
        };
        assert_eq!(format!("{e:?}"), e.to_string());
        assert!(format!("{e:?}").contains("apt-get install mesa-vulkan-drivers"));
        let io = Error::Io {
            path: "a.safetensors".into(),
            source: std::io::Error::from(std::io::ErrorKind::NotFound),
        };
        assert_eq!(format!("{io:?}"), io.to_string());
    }
}
