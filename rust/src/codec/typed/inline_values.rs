//! Storing a decoded dataclass field straight into the new instance's inline
//! values (CPython 3.11's managed-dict layout), skipping what
//! `object.__setattr__` repeats for every field of every instance.
//!
//! Why: `perf` put 16-19% of decoding the twitter document into dataclasses in
//! `PyObject_GenericSetAttr`: the `_PyType_Lookup` of each field name (wasted:
//! the plan's `plain_attrs` tag proves no field name is a data descriptor on
//! the class) and the hash lookup of the name in the class's shared keys
//! (`unicodekeys_lookup_unicode`), whose answer is the same for every
//! instance. Here the slot of each field in the shared keys is remembered per
//! plan field (`SlotHint`) and the store is what CPython's own specialized
//! `STORE_ATTR_INSTANCE_VALUE` does for an empty slot: put the value in
//! `values[ix]`, append `ix` to the insertion order.
//!
//! Only for CPython 3.11 (the layout moved in 3.12 and 3.13): every other
//! build has no `store` and keeps `object.__setattr__`. Anything unexpected
//! (another type, a class changed since the plan, a materialized `__dict__`,
//! a name not (yet) in the shared keys, a slot already set) answers false and
//! the caller takes `object.__setattr__`, which then does exactly what it
//! always did. The result is the same object state as that path leaves: same
//! values, same insertion order, the same one new reference to the value.

use std::sync::atomic::AtomicU8;

/// Where a field's name was last found in its class's shared keys (an index
/// into the keys' entries), or that it was not among the first `n` entries
/// (`ABSENT | n`; `UNKNOWN` is such a state no keys can be in). Only a hint:
/// a found index is checked against the keys on every use, and an absence
/// holds only while the keys have as many entries as when it was seen
/// (shared keys only grow), so a stale hint costs a rescan or a generic
/// store, never a wrong one. Remembering the absence matters for classes of
/// more than 30 fields (the most shared keys hold): without it every
/// instance rescanned the keys for each field past the 30th.
#[cfg_attr(
    not(all(Py_3_11, not(Py_3_12), not(any(PyPy, GraalPy, Py_LIMITED_API)))),
    allow(dead_code) // read only by the 3.11 store
)]
pub struct SlotHint(AtomicU8);

/// Some absence (`ABSENT | 127`) no shared keys can match: at most 30 entries.
const UNKNOWN: u8 = u8::MAX;

impl SlotHint {
    pub fn new() -> Self {
        Self(AtomicU8::new(UNKNOWN))
    }
}

#[cfg(all(Py_3_11, not(Py_3_12), not(any(PyPy, GraalPy, Py_LIMITED_API))))]
pub(super) use cpython311::store;

#[cfg(all(Py_3_11, not(Py_3_12), not(any(PyPy, GraalPy, Py_LIMITED_API))))]
mod cpython311 {
    use std::sync::atomic::Ordering;

    use super::SlotHint;

    /// The hint's flag for "not among the first `n` entries" (`ABSENT | n`).
    const ABSENT: u8 = 0x80;
    use pyo3::ffi;
    use pyo3::prelude::*;
    use pyo3::types::PyString;

    /// `struct _dictkeysobject` of 3.11's `Include/internal/pycore_dict.h`
    /// (the header part; `dk_indices` follows, then the entries).
    #[repr(C)]
    #[allow(dead_code)] // the layout needs every field; only some are read
    #[allow(clippy::struct_field_names)] // CPython's own names
    struct DictKeys {
        dk_refcnt: ffi::Py_ssize_t,
        dk_log2_size: u8,
        dk_log2_index_bytes: u8,
        dk_kind: u8,
        dk_version: u32,
        dk_usable: ffi::Py_ssize_t,
        dk_nentries: ffi::Py_ssize_t,
    }

    /// `PyDictUnicodeEntry`: the entries of unicode and split keys.
    #[repr(C)]
    #[allow(dead_code)] // `me_value` is unused in split keys
    struct UnicodeEntry {
        me_key: *mut ffi::PyObject,
        me_value: *mut ffi::PyObject,
    }

    /// `DICT_KEYS_SPLIT`: the shared keys of a class's instances.
    const DICT_KEYS_SPLIT: u8 = 2;

    /// `SHARED_KEYS_MAX_SIZE`: shared keys never hold more entries than this.
    const SHARED_KEYS_MAX_SIZE: ffi::Py_ssize_t = 30;

    /// `_PyObject_ValuesPointer(obj)` = `((PyDictValues **)obj) - 4`: the
    /// instance's inline values (NULL once its `__dict__` was made).
    const VALUES_SLOT: usize = 4;

    /// `_PyObject_ManagedDictPointer(obj)` = `((PyObject **)obj) - 3`: the
    /// instance's `__dict__` once it was made (its values pointer is then NULL).
    const DICT_SLOT: usize = 3;

    /// Stores `value` as the attribute `name` of `obj`, a fresh instance of
    /// the heap type `cls` (the plan's class, alive while the plan is), in its
    /// inline values, if that is exactly what `object.__setattr__` would do;
    /// false, with nothing changed, when it cannot tell.
    ///
    /// `tag` is the plan's `plain_attrs` (non-zero): while `cls` still has
    /// that version tag, no field name is a data descriptor on it, so
    /// `object.__setattr__` goes on to `_PyObject_StoreInstanceAttribute`,
    /// which for a name already in the shared keys and an empty slot only
    /// fills the slot and records the insertion order.
    ///
    /// Always inlined into the field loops (through `FieldSink::set`): as a
    /// call, its register saves were a fifth of its cost.
    #[allow(clippy::inline_always)]
    #[inline(always)]
    pub(in crate::codec::typed) fn store(
        obj: &Bound<'_, PyAny>,
        cls: *mut ffi::PyTypeObject,
        tag: u32,
        name: &Bound<'_, PyString>,
        hint: &SlotHint,
        value: &Bound<'_, PyAny>,
    ) -> bool {
        let o = obj.as_ptr();
        // SAFETY: `o` is a live object (held by `obj`), so its type is live
        // too. Every read below is of memory CPython keeps valid while that
        // holds; each step checks what the next one relies on:
        // - `tp == cls`, a heap type with a managed dict: the two words before
        //   the GC header are the values and dict pointers
        //   (`_PyType_PreHeaderSize`), and `tp` is a `PyHeapTypeObject`.
        // - `tp_version_tag == tag` (valid): the type has not changed since
        //   the plan proved no field name is a data descriptor on it.
        // - values non-NULL: no `__dict__` was made; CPython sizes the values
        //   of every instance for its type's current cached keys (its own
        //   `_PyObject_StoreInstanceAttribute` writes `values[ix]` for an
        //   `ix` found in `CACHED_KEYS(tp)` on that same invariant), so an
        //   `ix` below the keys' `dk_nentries` is inside the values.
        // - keys non-NULL and split: the entries are `PyDictUnicodeEntry`s
        //   after `1 << dk_log2_index_bytes` bytes of indices, `dk_nentries`
        //   (<= 30) of them set; `ix` is one whose key is `name` itself.
        // - the insertion-order prefix has room (`[-2]` used + 2 < `[-1]`
        //   prefix size), as `_PyDictValues_AddToInsertionOrder` asserts.
        // The GIL is held (we have `obj`), so nothing changes meanwhile, and
        // no Python code runs between the checks and the store.
        unsafe {
            let tp = ffi::Py_TYPE(o);
            if tp != cls {
                return false;
            }
            let flags = (*tp).tp_flags;
            if flags & ffi::Py_TPFLAGS_HEAPTYPE == 0
                || flags & ffi::Py_TPFLAGS_MANAGED_DICT == 0
                || flags & ffi::Py_TPFLAGS_VALID_VERSION_TAG == 0
                || (*tp).tp_version_tag != tag
            {
                return false;
            }
            let values = *o.cast::<*mut *mut ffi::PyObject>().sub(VALUES_SLOT);
            if values.is_null() {
                return store_in_dict(o, name, value);
            }
            let keys = (*tp.cast::<ffi::PyHeapTypeObject>())
                .ht_cached_keys
                .cast::<DictKeys>();
            if keys.is_null() || (*keys).dk_kind != DICT_KEYS_SPLIT {
                return false;
            }
            let used = (*keys).dk_nentries;
            if !(0..=SHARED_KEYS_MAX_SIZE).contains(&used) {
                return false;
            }
            // The entries start after the indices, whose size is a power of
            // two of at least 8 bytes past a 32-byte header: pointer-aligned.
            #[allow(clippy::cast_ptr_alignment)]
            let entries = keys
                .cast::<u8>()
                .add(std::mem::size_of::<DictKeys>() + (1usize << (*keys).dk_log2_index_bytes))
                .cast::<UnicodeEntry>();
            let Some(ix) = slot_of(entries, used as usize, name.as_ptr(), hint) else {
                return false;
            };
            let order = values.cast::<u8>();
            let prefix = usize::from(*order.sub(1));
            let filled = usize::from(*order.sub(2));
            if filled + 2 >= prefix || ix + 2 >= prefix {
                return false;
            }
            let slot = values.add(ix);
            if !(*slot).is_null() {
                return false; // set before: `object.__setattr__` replaces it
            }
            ffi::Py_INCREF(value.as_ptr());
            *slot = value.as_ptr();
            // `_PyDictValues_AddToInsertionOrder(values, ix)`.
            *order.sub(2 + filled + 1) = ix as u8;
            *order.sub(2) = (filled + 1) as u8;
        }
        true
    }

    /// The store into a made `__dict__`, as `object.__setattr__` does it
    /// then (`_PyObjectDict_SetItem`: `PyDict_SetItem`) without its type
    /// lookup; false, with nothing changed, when there is no dict.
    ///
    /// Why: a class of more than 30 fields (twitter's `User` has 40) has
    /// the rest outside its shared keys; the first of them makes the dict,
    /// and the generic path for each after it was ~8% of decoding twitter.
    ///
    /// SAFETY (caller): `o` is a live instance of a heap type with a managed
    /// dict whose inline values pointer is NULL, and whose class (by the
    /// plan's tag) has no data descriptor named `name`; the GIL is held.
    #[inline]
    unsafe fn store_in_dict(
        o: *mut ffi::PyObject,
        name: &Bound<'_, PyString>,
        value: &Bound<'_, PyAny>,
    ) -> bool {
        let dict = *o.cast::<*mut ffi::PyObject>().sub(DICT_SLOT);
        if dict.is_null() || ffi::PyDict_Check(dict) == 0 {
            return false;
        }
        if ffi::PyDict_SetItem(dict, name.as_ptr(), value.as_ptr()) != 0 {
            // Nothing was stored: the generic path tries again and reports.
            ffi::PyErr_Clear();
            return false;
        }
        true
    }

    /// The index of the entry whose key is `name`, from the hint or, failing
    /// that, a scan of the at most 30 entries. Usually the key is `name`
    /// itself (field names and `__init__`'s attribute names are interned);
    /// an equal string that is another object (a name stored through the
    /// `__dict__`, say) is the same key to the dict, so it matches too.
    ///
    /// SAFETY (caller): `entries` points to `used` initialized entries of
    /// split keys, whose keys are all exact `str` objects with their hash
    /// computed; `name` is an exact `str`.
    #[inline]
    unsafe fn slot_of(
        entries: *const UnicodeEntry,
        used: usize,
        name: *mut ffi::PyObject,
        hint: &SlotHint,
    ) -> Option<usize> {
        // The usual case, inline: the hint names the entry holding `name`.
        let state = hint.0.load(Ordering::Relaxed);
        let ix = usize::from(state);
        if ix < used && (*entries.add(ix)).me_key == name {
            return Some(ix);
        }
        rescan(entries, used, name, hint, state)
    }

    /// `slot_of` when the hint did not name `name`'s entry itself.
    ///
    /// SAFETY (caller): as for `slot_of`.
    #[cold]
    #[inline(never)]
    unsafe fn rescan(
        entries: *const UnicodeEntry,
        used: usize,
        name: *mut ffi::PyObject,
        hint: &SlotHint,
        state: u8,
    ) -> Option<usize> {
        if state & ABSENT != 0 {
            if usize::from(state & !ABSENT) == used {
                return None; // not there when the keys were as they are now
            }
        } else if usize::from(state) < used && same_key(entries, state.into(), name) {
            return Some(state.into());
        }
        let found = (0..used)
            .find(|&i| (*entries.add(i)).me_key == name)
            .or_else(|| (0..used).find(|&i| same_key(entries, i, name)));
        hint.0.store(
            found.map_or(ABSENT | used as u8, |ix| ix as u8),
            Ordering::Relaxed,
        );
        found
    }

    /// Whether entry `i`'s key is `name` or a string equal to it.
    ///
    /// SAFETY (caller): as for `slot_of`, and `i < used`.
    #[inline]
    unsafe fn same_key(entries: *const UnicodeEntry, i: usize, name: *mut ffi::PyObject) -> bool {
        let key = (*entries.add(i)).me_key;
        if key == name {
            return true;
        }
        if key.is_null() {
            return false;
        }
        let hash = |s: *mut ffi::PyObject| (*s.cast::<ffi::PyASCIIObject>()).hash;
        let (a, b) = (hash(key), hash(name));
        // Unequal cached hashes: unequal strings. Two exact strs:
        // `PyUnicode_Compare` cannot fail on them.
        (a == -1 || b == -1 || a == b) && ffi::PyUnicode_Compare(key, name) == 0
    }
}
