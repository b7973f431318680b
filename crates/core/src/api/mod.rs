//! The outbound WeChat API. Pure: reading answers ([`answer`]), the token policy ([`token`]),
//! admin API planning ([`admin`]), uploads ([`media`]) and their file formats ([`format`]),
//! customer-service account choice ([`kf`]'s pure half). Over the runtime traits: the token cache ([`token_cache`]), API calls
//! with one refresh-and-retry ([`client`]), the online-list cache ([`kf::online_agents`]).

pub mod admin;
pub mod answer;
pub mod client;
pub mod format;
pub mod kf;
pub mod media;
pub mod token;
pub mod token_cache;
