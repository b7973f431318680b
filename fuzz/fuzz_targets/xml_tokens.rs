#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| wechat_kf_worker_fuzz::xml_tokens(data));
