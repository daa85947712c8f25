#![no_main]
//! `edit`: see pidcap_fuzz::targets (the same target as the stable driver's).
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = (pidcap_fuzz::targets::find("edit").expect("a pidcap-fuzz target").run)(data);
});
