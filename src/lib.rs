//! wechat-kf-worker: the Cloudflare Worker. It only wires: the WeChat protocol is
//! [`wechat_mp`], policy and state are [`kf_core`]; here are the wire format the JS entry reads
//! ([`wire`]), the reads the entry makes for the core ([`reads`]) and, on wasm32, the glue that implements the core's runtime traits over KV,
//! timers and `fetch` (`glue`).

pub mod reads;
pub mod wire;

#[cfg(target_arch = "wasm32")]
mod glue;
