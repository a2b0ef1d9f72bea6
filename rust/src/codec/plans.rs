//! The public `loads(data, type=T)` functions find `T`'s compiled plan here.
//!
//! Plans are compiled and cached by `microstd.codec._plan.plan_for`, a Python
//! function whose weak-keyed lookup costs a few Python frames per call (more
//! than the decode of a small message). This is a dict in front of it, keyed
//! by the type object itself, holding the plan's core (`TypedPlan`). It keeps
//! no class alive that `plan_for`'s cache does not already keep (a plan holds
//! its classes); it is bounded like `plan_for`'s cache of typing forms.

use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::PyDict;

/// Most types remembered; past this the dict starts again (`plan_for` still
/// has them, so a miss costs one Python call).
const MAX_CACHED: usize = 1024;

static CACHE: PyOnceLock<Py<PyDict>> = PyOnceLock::new();
static PLAN_FOR: PyOnceLock<Py<PyAny>> = PyOnceLock::new();

/// The `TypedPlan` decoding into `tp` (`plan_for(tp).core`); `plan_for`'s
/// TypeError for an unsupported type passes through.
pub fn core_plan<'py>(tp: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>> {
    let py = tp.py();
    let cache = CACHE.get_or_init(py, || PyDict::new(py).unbind()).bind(py);
    // An unhashable annotation (Annotated with a list) is compiled every
    // time, as `plan_for` does.
    let hashable = match cache.get_item(tp) {
        Ok(Some(plan)) => return Ok(plan),
        Ok(None) => true,
        Err(_) => false,
    };
    let plan = PLAN_FOR
        .import(py, "microstd.codec._plan", "plan_for")?
        .call1((tp,))?;
    let core = plan.getattr(pyo3::intern!(py, "core"))?;
    if core.is_none() {
        return Err(pyo3::exceptions::PyRuntimeError::new_err(
            "the decoder plan has no core plan although the core is loaded",
        ));
    }
    if hashable {
        if cache.len() >= MAX_CACHED {
            cache.clear();
        }
        cache.set_item(tp, &core)?;
    }
    Ok(core)
}
