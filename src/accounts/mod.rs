//! Shoppers' accounts: how a password is stored and checked ([`password`]: Argon2id), where the
//! slow hash runs ([`login_pool`]: threads of its own, bounded), how a login becomes a session
//! ([`session`]), which tokens logged out lately ([`logouts`]: a buy reads no session, so it
//! asks these), and how password guessing is slowed down ([`login_guard`]). The edge's login
//! route (`http::auth`) and the demo seed use these.

pub mod login_guard;
pub mod login_pool;
pub mod logouts;
pub mod password;
pub mod session;
