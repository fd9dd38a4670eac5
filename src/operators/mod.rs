//! The operators' side: watching a sale run and proving it balanced. A sale's phase and live state
//! ([`live`]), per-second counts for the console's chart ([`tally`]), and the reconciliation of
//! Redis against MySQL with its repair ([`audit`]). Changing a sale is [`crate::sales::manage`].

pub mod audit;
pub mod live;
pub mod tally;
