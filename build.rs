//! Exposes PyO3's interpreter cfgs (`Py_3_12`, `PyPy`, `Py_LIMITED_API`, ...)
//! to our own code, so the codecs' ffi fast paths can follow the object
//! layouts of the Python they are built for (an int's digits moved in 3.12).
//! The pure-Rust build (no `python` feature) looks for no interpreter.

fn main() {
    #[cfg(feature = "python")]
    pyo3_build_config::use_pyo3_cfgs();
}
