//! Loading an ONNX model is reading outside input: a model whose shapes do not fit what we ask of it
//! can make the runtime's analysis panic instead of returning an error. Every load goes through
//! [`without_panics`], which turns such a panic into an error that names it.

use std::panic::{AssertUnwindSafe, catch_unwind};

/// Runs `load`, turning a panic inside it into `Err` with the panic's message.
pub fn without_panics<T>(load: impl FnOnce() -> Result<T, String>) -> Result<T, String> {
    match catch_unwind(AssertUnwindSafe(load)) {
        Ok(result) => result,
        Err(panic) => {
            let message = panic
                .downcast_ref::<String>()
                .map(String::as_str)
                .or_else(|| panic.downcast_ref::<&str>().copied())
                .unwrap_or("no message");
            Err(format!("the model could not be analysed ({message})"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panic_becomes_an_error() {
        let r: Result<(), String> = without_panics(|| panic!("axis 2 of rank 2"));
        assert!(r.unwrap_err().contains("axis 2 of rank 2"));
        assert_eq!(without_panics(|| Ok::<_, String>(3)), Ok(3));
    }
}
