#![no_main]
libfuzzer_sys::fuzz_target!(|input: wechat_kf_worker_fuzz::ReplyInput| wechat_kf_worker_fuzz::reply_roundtrip(input));
