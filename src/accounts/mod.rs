//! Shoppers' accounts: how a password is checked, how a login becomes a session, and how password
//! guessing is slowed down. The edge's login route (`http::auth`) and the demo seed use these.

pub mod login_guard;
pub mod password;
pub mod session;
