//! WeChat API calls with the access_token, over the runtime traits: every exchange bounded in
//! time, and one refresh-and-retry when WeChat rejects the token.

use std::rc::Rc;

use crate::api::answer::read_answer;
use crate::api::token::is_token_rejection;
use crate::api::token_cache::{TokenCache, TokenState};
use crate::config::Credentials;
use crate::error::Error;
use crate::http::ApiCall;
use crate::runtime::{exchange, Runtime};

/// The WeChat API of one account: the runtime, the account's token state and its credentials.
/// Cheap to clone (work after the reply keeps its own).
pub struct WeChatApi<R> {
    rt: Rc<R>,
    tokens: Rc<TokenState>,
    creds: Rc<Credentials>,
}

impl<R> Clone for WeChatApi<R> {
    fn clone(&self) -> Self {
        WeChatApi { rt: self.rt.clone(), tokens: self.tokens.clone(), creds: self.creds.clone() }
    }
}

impl<R: Runtime> WeChatApi<R> {
    pub fn new(rt: Rc<R>, tokens: Rc<TokenState>, creds: Rc<Credentials>) -> Self {
        WeChatApi { rt, tokens, creds }
    }

    pub fn runtime(&self) -> &Rc<R> {
        &self.rt
    }

    pub fn appid(&self) -> &str {
        &self.creds.appid
    }

    /// The account's token cache.
    pub fn tokens(&self) -> TokenCache<'_, R> {
        TokenCache { rt: &self.rt, state: &self.tokens, creds: &self.creds }
    }

    /// Calls `api`: WeChat's JSON answer on success, else its error. On 40001/40014/42001 the
    /// token is refreshed once (if the cache allows) and the call retried once.
    pub async fn call(&self, api: &ApiCall) -> Result<Vec<u8>, Error> {
        let tokens = self.tokens();
        let base = &self.creds.api_base;
        let token = tokens.access_token().await?;
        let answer = exchange(&*self.rt, &api.http(base, &token.access_token)).await?;
        match read_answer(&answer) {
            Ok(_) => Ok(answer.body),
            Err(Error::WeChat { errcode, errmsg }) if is_token_rejection(errcode) => {
                let Some(fresh) = tokens.refresh_after_rejection(&token).await? else {
                    return Err(Error::WeChat { errcode, errmsg });
                };
                let answer = exchange(&*self.rt, &api.http(base, &fresh.access_token)).await?;
                read_answer(&answer).map(|_| answer.body)
            }
            Err(e) => Err(e),
        }
    }
}
