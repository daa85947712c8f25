#![no_main]
//! `library_query`: see pidcap_fuzz::targets (the same target as the stable driver's).
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = (pidcap_fuzz::targets::find("library_query").expect("a pidcap-fuzz target").run)(data);
});
