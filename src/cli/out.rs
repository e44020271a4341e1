//! Standard output for the subcommands' reports. A reader that went away (`hitgate … | head`) ends
//! the program quietly with exit 0, as a command-line tool should, instead of a panic.

use std::fmt;
use std::io::{ErrorKind, Write};

/// Writes `text` and, with `newline`, a line end.
pub fn write(text: fmt::Arguments<'_>, newline: bool) {
    let mut out = std::io::stdout().lock();
    let written = out.write_fmt(text).and_then(|()| if newline { out.write_all(b"\n") } else { Ok(()) });
    if let Err(e) = written.and_then(|()| out.flush()) {
        if e.kind() == ErrorKind::BrokenPipe {
            std::process::exit(0);
        }
        // Any other failure to print (a full disk behind a redirect) is said where it can be.
        eprintln!("hitgate: cannot write to standard output: {e}");
        std::process::exit(1);
    }
}

/// `println!` to standard output, quiet on a closed pipe.
macro_rules! say {
    () => { $crate::cli::out::write(format_args!(""), true) };
    ($($arg:tt)*) => { $crate::cli::out::write(format_args!($($arg)*), true) };
}

/// `print!` to standard output, quiet on a closed pipe.
macro_rules! show {
    ($($arg:tt)*) => { $crate::cli::out::write(format_args!($($arg)*), false) };
}

pub(crate) use {say, show};
