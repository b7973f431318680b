//! WeChat API calls with the access_token, over the runtime traits: every exchange bounded in
//! time, and one refresh-and-retry when WeChat rejects the token.

use crate::api::answer::read_answer;
use crate::api::http::{Answer, ApiCall, HttpCall};
use crate::api::token::is_token_rejection;
use crate::api::token_cache::TokenCache;
use crate::error::Error;
use crate::runtime::{with_timeout, Runtime, Upstream};

/// Longest wait for one HTTP exchange.
pub const HTTP_TIMEOUT_MS: u64 = 10_000;

/// One HTTP exchange, at most [`HTTP_TIMEOUT_MS`] ([`Error::UpstreamTimeout`] past it).
pub async fn exchange<R: Runtime>(rt: &R, call: &HttpCall) -> Result<Answer, Error> {
    with_timeout(rt.clock(), HTTP_TIMEOUT_MS, Box::pin(rt.upstream().send(call)))
        .await
        .unwrap_or(Err(Error::UpstreamTimeout))
}

/// The WeChat API of one account.
pub struct WeChatApi<'a, R: Runtime> {
    pub tokens: TokenCache<'a, R>,
}

impl<R: Runtime> WeChatApi<'_, R> {
    /// Calls `api`: WeChat's JSON answer on success, else its error. On 40001/40014/42001 the
    /// token is refreshed once (if the cache allows) and the call retried once.
    pub async fn call(&self, api: &ApiCall) -> Result<Vec<u8>, Error> {
        let base = self.tokens.creds.api_base;
        let token = self.tokens.access_token().await?;
        let answer = exchange(self.tokens.rt, &api.http(base, &token.access_token)).await?;
        match read_answer(&answer) {
            Ok(_) => Ok(answer.body),
            Err(Error::WeChat { errcode, errmsg }) if is_token_rejection(errcode) => {
                let Some(fresh) = self.tokens.refresh_after_rejection(&token).await? else {
                    return Err(Error::WeChat { errcode, errmsg });
                };
                let answer = exchange(self.tokens.rt, &api.http(base, &fresh.access_token)).await?;
                read_answer(&answer).map(|_| answer.body)
            }
            Err(e) => Err(e),
        }
    }
}
