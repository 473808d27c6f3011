//! The gRPC edge: `auth.v1.Auth` requests in, [`Accounts`] and [`TokenService`] calls, statuses out.

use crate::account_service::Accounts;
use crate::error::AuthError;
use crate::keys::ALGORITHM;
use crate::telemetry;
use crate::token_issuer::TokenService;
use contracts::auth::v1::{
    Claims, GetVerificationKeysRequest, LoginRequest, LoginResponse, RegisterRequest,
    RegisterResponse, ValidateTokenRequest, VerificationKey, VerificationKeys, auth_server::Auth,
};
use secrecy::SecretString;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use tonic::{Request, Response, Status};

/// Longest client address kept as a rate-limit key; anything longer is not an address.
const MAX_CLIENT_ADDRESS_BYTES: usize = 64;

#[derive(Clone)]
pub struct AuthService {
    accounts: Accounts,
    tokens: Arc<TokenService>,
}

impl AuthService {
    pub fn new(accounts: Accounts, tokens: Arc<TokenService>) -> Self {
        Self { accounts, tokens }
    }
}

#[tonic::async_trait]
impl Auth for AuthService {
    async fn register(
        &self,
        request: Request<RegisterRequest>,
    ) -> Result<Response<RegisterResponse>, Status> {
        let RegisterRequest { email, password } = request.into_inner();
        let result = self
            .accounts
            .register(&email, SecretString::from(password))
            .await;
        telemetry::record_registration(&result);
        let user = result?;
        Ok(Response::new(RegisterResponse {
            user_id: user.id,
            email: user.email.to_string(),
        }))
    }

    async fn login(
        &self,
        request: Request<LoginRequest>,
    ) -> Result<Response<LoginResponse>, Status> {
        let peer = request.remote_addr();
        let LoginRequest {
            email,
            password,
            client_address,
        } = request.into_inner();
        let client = client_key(&client_address, peer);
        let result = self
            .accounts
            .login(&email, SecretString::from(password), &client)
            .await;
        telemetry::record_login(&result);
        let issued = result?;
        Ok(Response::new(LoginResponse {
            token: issued.token,
            expires_at: issued.claims.exp,
        }))
    }

    async fn validate_token(
        &self,
        request: Request<ValidateTokenRequest>,
    ) -> Result<Response<Claims>, Status> {
        let claims = self
            .tokens
            .validate(&request.into_inner().token)
            .map_err(AuthError::from)?;
        Ok(Response::new(Claims {
            sub: claims.sub,
            email: claims.email,
            iat: claims.iat,
            exp: claims.exp,
            iss: claims.iss,
            aud: claims.aud,
            jti: claims.jti,
        }))
    }

    async fn get_verification_keys(
        &self,
        _request: Request<GetVerificationKeysRequest>,
    ) -> Result<Response<VerificationKeys>, Status> {
        let keys = self
            .tokens
            .keys()
            .verification_keys()
            .iter()
            .map(|key| VerificationKey {
                kid: key.kid.clone(),
                algorithm: ALGORITHM.to_owned(),
                public_key_pem: key.public_key_pem.clone(),
            })
            .collect();
        Ok(Response::new(VerificationKeys {
            keys,
            issuer: self.tokens.issuer().to_owned(),
            audience: self.tokens.audience().to_owned(),
        }))
    }
}

/// The key failed logins are counted under: the end client's address as reported by the
/// gateway (the port dropped, since it changes per connection), else the caller's own address.
fn client_key(reported: &str, peer: Option<SocketAddr>) -> String {
    let reported = reported.trim();
    if let Ok(addr) = reported.parse::<SocketAddr>() {
        return addr.ip().to_string();
    }
    if let Ok(ip) = reported.parse::<IpAddr>() {
        return ip.to_string();
    }
    if !reported.is_empty() {
        let mut end = reported.len().min(MAX_CLIENT_ADDRESS_BYTES);
        while !reported.is_char_boundary(end) {
            end -= 1;
        }
        return reported[..end].to_owned();
    }
    peer.map_or_else(|| "unknown".to_owned(), |addr| addr.ip().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_keys_ignore_ports_and_fall_back_to_the_peer() {
        let peer: SocketAddr = "10.1.2.3:5555".parse().unwrap();
        assert_eq!(client_key("203.0.113.7", Some(peer)), "203.0.113.7");
        assert_eq!(client_key("203.0.113.7:40000", Some(peer)), "203.0.113.7");
        assert_eq!(client_key("[2001:db8::1]:443", Some(peer)), "2001:db8::1");
        assert_eq!(client_key("  ", Some(peer)), "10.1.2.3");
        assert_eq!(client_key("", None), "unknown");
        assert_eq!(client_key(&"é".repeat(100), None).len(), 64);
    }
}
