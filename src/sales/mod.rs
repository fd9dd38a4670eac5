//! Sales as records: a sale's rows in MySQL and keys in Redis ([`store`]: warm-up, reset, giving a
//! unit back), the rules every change must keep ([`manage`]: create, change, cancel), and what a
//! shopper sees of the sales on offer ([`catalogue`], cache-aside). Sale code is handed [`stores::Stores`],
//! the connections it uses, never the whole `AppState`.

pub mod catalogue;
pub mod manage;
pub mod store;
pub mod stores;
