//! The buy path: everything a "buy" passes through between the edge's route and Redis.
//!
//! A buy is decided by one atomic `lua/admit.lua` call per sale shard ([`scripts`]), shared by the
//! buys of that shard that arrive together ([`coalesce`]). Before it: the captcha that hands out a
//! hidden path ([`captcha`]), the local sold-out flag that answers without Redis once a sale is gone
//! ([`soldout`]), the shard a buy lands on when a hot item is split ([`split`]), and the waiting
//! room that lets a crowd in at a rate ([`room`]), and the live updates pushed to the shoppers'
//! pages instead of their polls ([`push`]). Nothing here knows the HTTP layer or `AppState`:
//! each part is handed the connections, keys and scripts it uses.

pub mod captcha;
pub mod coalesce;
pub mod path_seal;
pub mod push;
pub mod room;
pub mod script_check;
pub mod script_release;
pub mod scripts;
pub mod soldout;
pub mod split;
