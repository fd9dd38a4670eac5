//! The one error type of the HTTP API, and its mapping to an HTTP status and an envelope code
//! (the codes of docs/api.md). Every refusal the edge gives goes through [`AppError::status`] and
//! [`AppError::code`]; nothing else picks a status.

use hyper::StatusCode;

/// The services the edge depends on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dependency {
    Redis,
    Mysql,
    /// The shop's key set (`jwt_jwks_url`), never fetched yet: a shop token cannot be judged.
    ShopKeys,
}

impl std::fmt::Display for Dependency {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Dependency::Redis => "Redis",
            Dependency::Mysql => "MySQL",
            Dependency::ShopKeys => "the shop's key set",
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// Malformed input: a missing field, a non-numeric id, a body that is not JSON.
    #[error("bad parameter: {0}")]
    BadParam(String),
    /// No session cookie/bearer token, or it expired.
    #[error("session missing or expired; please log in")]
    SessionMissing,
    #[error("mobile number is not valid")]
    BadMobile,
    /// An unknown mobile or a wrong password: one answer for both, so a login does not tell
    /// who is registered (code 500214, "not registered", is no longer given).
    #[error("wrong mobile number or password")]
    WrongPassword,
    #[error("sold out")]
    SoldOut,
    #[error("you have already bought this item")]
    Duplicate,
    /// Admitted, but replicas have not confirmed it yet (`plumbing::replicas`): not "queued"
    /// until they do; the result endpoint settles it either way.
    #[error("your buy is being confirmed; check the result (GET /api/seckill/result)")]
    Confirming,
    /// This edge holds as many event streams as `push_max_connections` allows.
    #[error("too many live connections on this server; poll instead")]
    PushFull,
    /// This shopper, or this address, holds as many event streams as an edge gives one
    /// (`admission::push`): the page polls instead.
    #[error("too many live connections from you; poll instead")]
    TooManyStreams,
    /// Too many wrong captcha answers from this shopper in this sale lately.
    #[error("too many wrong captcha answers; try again after the wait given")]
    CaptchaLocked { retry_after_ms: u64 },
    /// This shopper asked for more fresh captchas of this sale than a minute allows.
    #[error("too many new captchas; try again after the wait given")]
    TooManyCaptchas { retry_after_ms: u64 },
    /// An API request a browser says came from another site (`Sec-Fetch-Site: cross-site`).
    #[error("cross-site requests are not served")]
    CrossSite,
    /// The admin listener asked for by a name it does not answer to (`admin_hosts`).
    #[error("this listener does not answer to that host name")]
    WrongHost,
    #[error("the sale has not started yet")]
    NotStarted { starts_in_ms: i64 },
    #[error("the sale has ended")]
    Ended,
    #[error("the request path is not valid; fetch a new one")]
    BadPath,
    #[error("wrong or expired captcha")]
    WrongCaptcha,
    #[error("too many requests; retry in {retry_after_ms} ms")]
    TooManyRequests { retry_after_ms: u64 },
    #[error("not found")]
    NotFound,
    /// The admin or the shop's server's token is wrong.
    #[error("admin token missing or wrong")]
    Forbidden,
    /// No `Authorization: Bearer` on a route that takes the admin or the shop's server's token
    /// (401 with `WWW-Authenticate: Bearer`; a wrong one is `Forbidden`, 403).
    #[error("this route needs a token: send Authorization: Bearer TOKEN")]
    TokenMissing,
    #[error("the order was closed unpaid")]
    OrderClosed,
    /// The shop's server asked to close an order that is paid.
    #[error("the order is paid; it cannot be closed")]
    OrderPaid,
    #[error("request body too large")]
    TooLarge,
    #[error("too many failed logins; try again after the wait given")]
    TooManyLogins { retry_after_ms: u64 },
    /// The login pool is full (`crate::accounts::login_pool`): try again shortly.
    #[error("too many shoppers are logging in right now; try again in a moment")]
    LoginBusy { retry_after_ms: u64 },
    #[error("the request body did not arrive in time")]
    BodyTimeout,
    #[error("the body must be JSON, sent as Content-Type: application/json")]
    NotJson,
    /// A known path asked with a method it does not take; `allow` lists those it does (the
    /// 405's `Allow` header, e.g. `GET, POST`).
    #[error("method not allowed; this path takes {allow}")]
    MethodNotAllowed { allow: String },
    /// A body on a route that takes none (a `POST` without a body may send `{}`): refused
    /// rather than ignored, so a client never believes it sent something the edge read.
    #[error("this route takes no request body (a POST may send {{}})")]
    UnexpectedBody,
    /// A dependency is unreachable (or its circuit breaker is open): the client may retry.
    #[error("service temporarily unavailable ({0} unreachable)")]
    Unavailable(Dependency),
    /// A sale with a waiting room: this shopper's ticket is not through yet (or there is none).
    #[error("it is not your turn yet: wait in the waiting room")]
    NotYourTurn { position: Option<i64> },
    /// A sale with a waiting room has let through as many shoppers as it can serve.
    #[error("the waiting room has let through as many shoppers as this sale can serve")]
    RoomFull,
    /// A sale's settings break one of the rules of sale management (`crate::sales::manage`).
    #[error("{}", .0.message())]
    Invalid(SaleRule),
    /// A change a sale cannot take in its current phase (`crate::sales::manage`).
    #[error("{}", .0.message())]
    Refused(Refusal),
    /// A shop's token (`identity`) that cannot be taken: why, each with its own code.
    #[error("{}", .0.message())]
    ShopToken(TokenFault),
    /// A grant `POST /api/grants/redeem` refuses (`identity::grant`).
    #[error("{}", .0.message())]
    Grant(GrantFault),
    /// `POST /api/login` on an edge that takes only the shop's tokens (`auth = jwt`): its
    /// shoppers log in at the shop; nothing is hashed.
    #[error("this flashgate takes the shop's tokens (FLASHGATE_AUTH=jwt): log in at the shop")]
    LoginAtShop,
    /// A shopper holding the shop's token asked to pay or close an order: only the shop's server
    /// does that (on the admin listener, with `FLASHGATE_GRANT_REDEEM_TOKEN`).
    #[error("an order is paid or closed by the shop's server, not with a shopper's token")]
    ShopServerOnly,
    /// A draw sale's refusal (`crate::draws`): why, each with its own code.
    #[error("{}", .0.message())]
    Draw(DrawFault),
    /// The buy would take the account past the sale's `perAccount`, or (`campaign`) past the
    /// `campaignPerAccount` of the sale's campaign: it may still take `left` here.
    #[error("this buy would take you past the limit per account")]
    LimitReached { left: i64, campaign: bool },
    /// The buy asks for more units than the sale's `perBuy`.
    #[error("this sale sells at most {per_buy} units in one buy")]
    TooManyUnits { per_buy: i64 },
    /// Fewer units are left than the buy asks for: a buy is all or nothing.
    #[error("fewer units are left than you asked for")]
    NotEnough { left: i64 },
    /// `quantity` is not a whole number of at least 1.
    #[error("quantity must be a whole number of at least 1")]
    BadQuantity,
    /// `Idempotency-Key` is empty, over 255 bytes or not printable ASCII.
    #[error("Idempotency-Key must be 1 to 255 printable ASCII characters")]
    BadIdempotencyKey,
    /// The same `Idempotency-Key` was used for another request (another quantity).
    #[error("this Idempotency-Key was used for a different request")]
    IdempotencyKeyReused,
    /// Anything unexpected; the context is logged, the client sees a generic message.
    #[error("server error")]
    Internal(#[source] anyhow::Error),
}

impl AppError {
    /// The HTTP status this error is answered with.
    pub fn status(&self) -> StatusCode {
        use AppError::*;
        match self {
            BadParam(_) | BadMobile | WrongCaptcha | Invalid(_) | UnexpectedBody => {
                StatusCode::BAD_REQUEST
            }
            Refused(_) => StatusCode::CONFLICT,
            SessionMissing | WrongPassword | ShopToken(_) | TokenMissing => {
                StatusCode::UNAUTHORIZED
            }
            Grant(GrantFault::Spent | GrantFault::NoSuchOrder | GrantFault::OrderClosed) => {
                StatusCode::CONFLICT
            }
            LoginAtShop | ShopServerOnly => StatusCode::FORBIDDEN,
            Grant(_) => StatusCode::BAD_REQUEST,
            Forbidden | BadPath => StatusCode::FORBIDDEN,
            NotFound => StatusCode::NOT_FOUND,
            MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            Duplicate | OrderClosed | OrderPaid => StatusCode::CONFLICT,
            SoldOut | Ended | RoomFull => StatusCode::GONE,
            NotStarted { .. } | NotYourTurn { .. } => StatusCode::TOO_EARLY,
            TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            BodyTimeout => StatusCode::REQUEST_TIMEOUT,
            NotJson => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            TooManyRequests { .. } | TooManyLogins { .. } => StatusCode::TOO_MANY_REQUESTS,
            Unavailable(_) | LoginBusy { .. } => StatusCode::SERVICE_UNAVAILABLE,
            Draw(why) => why.status(),
            Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
            Confirming => StatusCode::ACCEPTED,
            LimitReached { .. } | NotEnough { .. } => StatusCode::CONFLICT,
            TooManyUnits { .. } | BadQuantity | BadIdempotencyKey => StatusCode::BAD_REQUEST,
            IdempotencyKeyReused => StatusCode::UNPROCESSABLE_ENTITY,
            PushFull => StatusCode::SERVICE_UNAVAILABLE,
            TooManyStreams | CaptchaLocked { .. } | TooManyCaptchas { .. } => {
                StatusCode::TOO_MANY_REQUESTS
            }
            CrossSite => StatusCode::FORBIDDEN,
            WrongHost => StatusCode::MISDIRECTED_REQUEST,
        }
    }

    /// The envelope's `code` (docs/api.md, "Codes").
    pub fn code(&self) -> i64 {
        use AppError::*;
        match self {
            Internal(_) | Unavailable(_) => 500100,
            BadParam(_) | TooLarge | BodyTimeout | NotJson | MethodNotAllowed { .. } => 500101,
            UnexpectedBody => 500102,
            SessionMissing => 500210,
            BadMobile => 500213,
            WrongPassword => 500215,
            LoginBusy { .. } => 500216,
            NotFound => 500404,
            Forbidden => 500403,
            TokenMissing => 500401,
            SoldOut => 500500,
            Duplicate => 500501,
            NotStarted { .. } | Ended => 500502,
            BadPath => 500503,
            WrongCaptcha => 500504,
            TooManyRequests { .. } | TooManyLogins { .. } => 500505,
            OrderClosed => 500506,
            NotYourTurn { .. } => 500507,
            RoomFull => 500508,
            Confirming => 500509,
            PushFull => 500510,
            TooManyStreams => 500511,
            CrossSite => 500512,
            CaptchaLocked { .. } => 500514,
            TooManyCaptchas { .. } => 500515,
            WrongHost => 500513,
            LimitReached { .. } => 500520,
            TooManyUnits { .. } => 500521,
            NotEnough { .. } => 500522,
            BadQuantity => 500523,
            BadIdempotencyKey => 500524,
            IdempotencyKeyReused => 500525,
            ShopToken(why) => 500220 + *why as i64,
            Grant(why) => 500240 + *why as i64,
            LoginAtShop => 500260,
            ShopServerOnly => 500261,
            OrderPaid => 500262,
            Invalid(rule) => 500700 + *rule as i64,
            Refused(why) => 500750 + *why as i64,
            Draw(why) => 500540 + *why as i64,
        }
    }
}

/// The rules a sale's settings must keep, each with its own envelope code (500700 + its number)
/// and the request field it is about. Checked by `crate::sales::manage` on create and on every change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SaleRule {
    /// `name`: 1 to 64 characters.
    Name = 0,
    /// `title`: 1 to 255 characters.
    Title = 1,
    /// `detail`: at most 10,000 characters.
    Detail = 2,
    /// `imageUrl`: at most 255 characters, a site path (`/img/x.png`) or an http(s) URL, no
    /// spaces, quotes or angle brackets.
    ImageUrl = 3,
    /// `price`: more than 0, at most 99,999,999.99, at most two decimals.
    Price = 4,
    /// `salePrice`: the same as `price`.
    SalePrice = 5,
    /// `salePrice` is at most `price`.
    SalePriceAbovePrice = 6,
    /// `stock`: 1 to 1,000,000 units.
    Stock = 7,
    /// `endAt` is after `startAt`.
    EndBeforeStart = 8,
    /// `endAt` is in the future.
    EndInPast = 9,
    /// `shards`: 1 to 64, and at most the stock.
    Shards = 10,
    /// `userRate` and `gateRate`: more than 0, at most 1,000,000 per second.
    Rate = 11,
    /// `userBurst` and `gateBurst`: 1 to 1,000,000.
    Burst = 12,
    /// `pathFactor`: 1 to 100.
    PathFactor = 13,
    /// `addStock`: 1 to 1,000,000, and the stock after it at most 1,000,000.
    AddStock = 14,
    /// `startAt`, `endAt`: epoch milliseconds between 2000 and 2100.
    Time = 15,
    /// A change that changes nothing.
    NothingToChange = 16,
    /// `roomOpensBefore`: 1 to 86,400 seconds; `roomRate`: more than 0, at most 1,000,000.
    Room = 17,
    /// `externalRef`: the shop's product reference, 1 to 255 printable ASCII characters.
    ExternalRef = 18,
    /// `perBuy`: 1 to 1,000, and at most `perAccount`.
    PerBuy = 19,
    /// `perAccount`: 1 to 1,000,000.
    PerAccount = 20,
    /// `perBuy` above 1 on a split sale (`shards` > 1): a buy takes units from one shard.
    PerBuySplit = 21,
    /// `campaign`: 1 to 32 characters of `a-z 0-9 - _ .` (`domain::Campaign`).
    Campaign = 22,
    /// `campaignPerAccount`: 1 to 1,000,000, at least the sale's `perAccount` (a campaign limit
    /// below it would make the sale's own unreachable), and given with `campaign` and only with it.
    CampaignPerAccount = 23,
    /// `campaignPerAccount` differs from the one the campaign's sales already have: every sale
    /// of a campaign states the same.
    CampaignDisagrees = 24,
    /// A split sale (`shards` > 1) in a campaign: the campaign's sales share one hash tag, which
    /// a split sale's shards (each a tag of its own) cannot.
    CampaignSplit = 25,
    /// `campaign` and `campaignPerAccount` are set when the sale is made and do not change (the
    /// sale's keys carry the campaign's tag, and the campaign's sales share its limit).
    CampaignFixed = 26,
    /// `registerFrom`, `registerUntil`, `claimFor` are for a draw sale (`mode: "draw"`) and a
    /// draw sale needs all three.
    DrawFields = 30,
    /// A draw's windows in order: `registerFrom` < `registerUntil` <= `startAt` < `endAt`,
    /// epoch ms between 2000 and 2100.
    DrawWindows = 31,
    /// `registerFrom` is in the future when the sale is made (the commitment is published
    /// before anyone can enter).
    RegisterInPast = 32,
    /// `claimFor`: 1 to 604,800 seconds (a week).
    ClaimFor = 33,
    /// A draw sale has one shard, no waiting room (the draw is its line), one unit a winner
    /// (`perBuy` and `perAccount` 1: a claim is one unit) and no campaign.
    DrawShape = 34,
}

impl SaleRule {
    pub const ALL: [SaleRule; 32] = [
        SaleRule::Name,
        SaleRule::Title,
        SaleRule::Detail,
        SaleRule::ImageUrl,
        SaleRule::Price,
        SaleRule::SalePrice,
        SaleRule::SalePriceAbovePrice,
        SaleRule::Stock,
        SaleRule::EndBeforeStart,
        SaleRule::EndInPast,
        SaleRule::Shards,
        SaleRule::Rate,
        SaleRule::Burst,
        SaleRule::PathFactor,
        SaleRule::AddStock,
        SaleRule::Time,
        SaleRule::NothingToChange,
        SaleRule::Room,
        SaleRule::ExternalRef,
        SaleRule::PerBuy,
        SaleRule::PerAccount,
        SaleRule::PerBuySplit,
        SaleRule::Campaign,
        SaleRule::CampaignPerAccount,
        SaleRule::CampaignDisagrees,
        SaleRule::CampaignSplit,
        SaleRule::CampaignFixed,
        SaleRule::DrawFields,
        SaleRule::DrawWindows,
        SaleRule::RegisterInPast,
        SaleRule::ClaimFor,
        SaleRule::DrawShape,
    ];

    /// The request field the rule is about (the console marks it).
    pub fn field(self) -> &'static str {
        use SaleRule::*;
        match self {
            Name => "name",
            Title => "title",
            Detail => "detail",
            ImageUrl => "imageUrl",
            Price => "price",
            SalePrice | SalePriceAbovePrice => "salePrice",
            Stock => "stock",
            EndBeforeStart | EndInPast | Time => "endAt",
            Shards => "shards",
            Rate => "userRate",
            Burst => "userBurst",
            PathFactor => "pathFactor",
            AddStock => "addStock",
            NothingToChange => "",
            Room => "roomOpensBefore",
            ExternalRef => "externalRef",
            PerBuy | PerBuySplit => "perBuy",
            PerAccount => "perAccount",
            Campaign | CampaignSplit | CampaignFixed => "campaign",
            CampaignPerAccount | CampaignDisagrees => "campaignPerAccount",
            DrawFields => "mode",
            DrawWindows => "registerUntil",
            RegisterInPast => "registerFrom",
            ClaimFor => "claimFor",
            DrawShape => "shards",
        }
    }

    pub fn message(self) -> &'static str {
        use SaleRule::*;
        match self {
            Name => "name must be 1 to 64 characters",
            Title => "title must be 1 to 255 characters",
            Detail => "detail must be at most 10000 characters",
            ImageUrl => {
                "imageUrl must be a site path (/img/x.png) or an http(s) URL of at most 255 \
                 characters, without spaces, quotes or angle brackets"
            }
            Price => "price must be more than 0 and at most 99999999.99, with at most two decimals",
            SalePrice => {
                "salePrice must be more than 0 and at most 99999999.99, with at most two decimals"
            }
            SalePriceAbovePrice => "salePrice must not be above price",
            Stock => "stock must be 1 to 1000000 units",
            EndBeforeStart => "endAt must be after startAt",
            EndInPast => "endAt must be in the future",
            Shards => "shards must be 1 to 64, and at most the stock",
            Rate => "userRate and gateRate must be more than 0 and at most 1000000 per second",
            Burst => "userBurst and gateBurst must be 1 to 1000000",
            PathFactor => "pathFactor must be 1 to 100",
            AddStock => "addStock must be 1 to 1000000, and the stock after it at most 1000000",
            Time => "startAt and endAt must be epoch milliseconds between the years 2000 and 2100",
            NothingToChange => "the change names no field to change",
            Room => {
                "roomOpensBefore must be 1 to 86400 seconds, and roomRate more than 0 and at most \
                 1000000 per second"
            }
            ExternalRef => "externalRef must be 1 to 255 printable ASCII characters",
            PerBuy => "perBuy must be 1 to 1000, and at most perAccount",
            PerAccount => "perAccount must be 1 to 1000000",
            PerBuySplit => "perBuy must be 1 on a split sale (shards above 1)",
            Campaign => "campaign must be 1 to 32 characters of a-z, 0-9, '-', '_' and '.'",
            CampaignPerAccount => {
                "campaignPerAccount must be 1 to 1000000 and at least perAccount, and comes with \
                 campaign (and only with it)"
            }
            CampaignDisagrees => {
                "campaignPerAccount must be the one the campaign's other sales have: every sale \
                 of a campaign states the same"
            }
            CampaignSplit => "a split sale (shards above 1) cannot be in a campaign",
            CampaignFixed => {
                "campaign and campaignPerAccount are set when a sale is made and cannot change"
            }
            DrawFields => {
                "registerFrom, registerUntil and claimFor are for a draw sale (mode \"draw\"), \
                 which needs all three"
            }
            DrawWindows => {
                "a draw's times must be in order: registerFrom < registerUntil <= startAt < \
                 endAt, epoch milliseconds between the years 2000 and 2100"
            }
            RegisterInPast => "registerFrom must be in the future when the sale is made",
            ClaimFor => "claimFor must be 1 to 604800 seconds",
            DrawShape => {
                "a draw sale has one shard (shards 1), no waiting room, one unit a winner \
                 (perBuy and perAccount 1) and no campaign"
            }
        }
    }
}

/// Why a shop's token is refused (401, code 500220 + its number). None of these reaches Redis or
/// MySQL: the token is judged at the edge (`identity::shop_token`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenFault {
    /// No token on the request (`Authorization: Bearer`, or the cookie `jwt_cookie` names).
    Missing = 0,
    /// Not a JWT: not three parts, bad base64 or JSON, or longer than 8 KiB.
    Malformed = 1,
    /// `alg: none`: an unsigned token, never taken.
    AlgNone = 2,
    /// An algorithm `jwt_algorithms` does not allow.
    AlgNotAllowed = 3,
    /// The algorithm is not the key's own (an HS256 token against an RSA key, say).
    KeyMismatch = 4,
    /// The signature does not verify.
    BadSignature = 5,
    /// The token names a key (`kid`) the shop's key set does not have.
    UnknownKey = 6,
    /// Past its `exp` (with the leeway), or no `exp`.
    Expired = 7,
    /// Before its `nbf` (with the leeway).
    NotYetValid = 8,
    /// `iss` is not `jwt_issuer`.
    WrongIssuer = 9,
    /// `aud` does not contain `jwt_audience`.
    WrongAudience = 10,
    /// The user claim (`jwt_user_claim`) is missing, empty or not a string.
    NoSubject = 11,
    /// The user claim is longer than 255 bytes.
    SubjectTooLong = 12,
    /// The user claim starts or ends with whitespace, or holds a control character: refused so
    /// that no two spellings of one subject can exist (`alice` and `alice `).
    SubjectUnsafe = 13,
}

impl TokenFault {
    pub const ALL: [TokenFault; 14] = [
        TokenFault::Missing,
        TokenFault::Malformed,
        TokenFault::AlgNone,
        TokenFault::AlgNotAllowed,
        TokenFault::KeyMismatch,
        TokenFault::BadSignature,
        TokenFault::UnknownKey,
        TokenFault::Expired,
        TokenFault::NotYetValid,
        TokenFault::WrongIssuer,
        TokenFault::WrongAudience,
        TokenFault::NoSubject,
        TokenFault::SubjectTooLong,
        TokenFault::SubjectUnsafe,
    ];

    pub fn message(self) -> &'static str {
        use TokenFault::*;
        match self {
            Missing => "no shop token: send the shop's JWT as Authorization: Bearer or its cookie",
            Malformed => {
                "the shop token is not a JWT (three base64url parts of JSON, at most 8 KiB)"
            }
            AlgNone => "the shop token is unsigned (alg none); it is never accepted",
            AlgNotAllowed => "the shop token's algorithm is not allowed (jwt_algorithms)",
            KeyMismatch => "the shop token's algorithm is not its key's algorithm",
            BadSignature => "the shop token's signature does not verify",
            UnknownKey => "the shop token names a key (kid) the shop's key set does not have",
            Expired => "the shop token has expired (or has no exp)",
            NotYetValid => "the shop token is not valid yet (nbf)",
            WrongIssuer => "the shop token is from another issuer (iss)",
            WrongAudience => "the shop token is for another audience (aud)",
            NoSubject => "the shop token names no shopper (its user claim is missing or empty)",
            SubjectTooLong => "the shop token's user claim is longer than 255 bytes",
            SubjectUnsafe => {
                "the shop token's user claim starts or ends with whitespace or holds a control \
                 character"
            }
        }
    }
}

/// Why `POST /api/grants/redeem` refuses a grant (code 500240 + its number): 409 for one
/// already redeemed, 400 for the rest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GrantFault {
    /// Not a grant: not a JWT, or not one of flashgate's keys.
    Malformed = 0,
    /// Its signature does not verify (it was changed after signing).
    Tampered = 1,
    /// Past its `exp`.
    Expired = 2,
    /// For another audience, or from another issuer.
    WrongAudience = 3,
    /// Redeemed before (its `jti` is spent).
    Spent = 4,
    /// Its order does not exist, or is not its `sub`'s, or not in its `sale`: a well-signed
    /// grant is still only as good as the order of record.
    NoSuchOrder = 5,
    /// Its order was closed (unpaid past its time, or by the shop).
    OrderClosed = 6,
}

impl GrantFault {
    pub const ALL: [GrantFault; 7] = [
        GrantFault::Malformed,
        GrantFault::Tampered,
        GrantFault::Expired,
        GrantFault::WrongAudience,
        GrantFault::Spent,
        GrantFault::NoSuchOrder,
        GrantFault::OrderClosed,
    ];

    pub fn message(self) -> &'static str {
        use GrantFault::*;
        match self {
            Malformed => "not a grant of this flashgate (not a JWT, or an unknown key)",
            Tampered => "the grant's signature does not verify",
            Expired => "the grant has expired",
            WrongAudience => "the grant is for another audience or from another issuer",
            Spent => "the grant was redeemed already",
            NoSuchOrder => {
                "the grant's order does not exist, or is not its subject's or its sale's"
            }
            OrderClosed => "the grant's order was closed",
        }
    }
}

/// Why a draw sale refuses (code 500540 + its number; `crate::draws`). Each says nothing was
/// recorded: refusals happen before the entry is written, or instead of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DrawFault {
    /// The sale is a first-come sale, not a draw (409).
    NotADraw = 0,
    /// Registration has not opened yet (425).
    NotOpen = 1,
    /// Registration is closed (410).
    Closed = 2,
    /// No proof of work, or not one: not base64 JSON of an ALTCHA solution (400).
    ProofMalformed = 3,
    /// The proof's signature is not ours, or its number does not solve its challenge (400).
    ProofForged = 4,
    /// The proof's challenge has expired: fetch a new one (400).
    ProofExpired = 5,
    /// The proof was issued for another sale or another address (400).
    ProofElsewhere = 6,
    /// The proof was used for an entry already (409).
    ProofReplayed = 7,
    /// The sale was drawn already: a draw happens once (409).
    AlreadyDrawn = 8,
    /// Not drawn yet: registration is still open, or the draw has not run (409).
    NotDrawn = 9,
    /// A draw sale sells only to entries holding a claim, within its window (403).
    NoClaim = 10,
    /// The proof's challenge asked for less work than its address owes now (it brought many
    /// entries since the challenge was fetched): fetch a new one (400).
    ProofTooEasy = 11,
}

impl DrawFault {
    pub const ALL: [DrawFault; 12] = [
        DrawFault::NotADraw,
        DrawFault::NotOpen,
        DrawFault::Closed,
        DrawFault::ProofMalformed,
        DrawFault::ProofForged,
        DrawFault::ProofExpired,
        DrawFault::ProofElsewhere,
        DrawFault::ProofReplayed,
        DrawFault::AlreadyDrawn,
        DrawFault::NotDrawn,
        DrawFault::NoClaim,
        DrawFault::ProofTooEasy,
    ];

    pub fn status(self) -> StatusCode {
        use DrawFault::*;
        match self {
            NotADraw | ProofReplayed | AlreadyDrawn | NotDrawn => StatusCode::CONFLICT,
            NotOpen => StatusCode::TOO_EARLY,
            Closed => StatusCode::GONE,
            ProofMalformed | ProofForged | ProofExpired | ProofElsewhere | ProofTooEasy => {
                StatusCode::BAD_REQUEST
            }
            NoClaim => StatusCode::FORBIDDEN,
        }
    }

    pub fn message(self) -> &'static str {
        use DrawFault::*;
        match self {
            NotADraw => "this sale is first come, first served: it takes no entries",
            NotOpen => "registration for this draw has not opened yet",
            Closed => "registration for this draw is closed",
            ProofMalformed => "the entry needs a proof of work (proof: the solved challenge)",
            ProofForged => "the proof of work does not solve a challenge of this sale's",
            ProofExpired => "the proof of work's challenge has expired; fetch a new one",
            ProofElsewhere => "the proof of work was issued for another sale or address",
            ProofTooEasy => {
                "the proof of work's challenge is easier than this address must do now; fetch a \
                 new one"
            }
            ProofReplayed => "the proof of work was used already; fetch a new challenge",
            AlreadyDrawn => "this sale was drawn already; a draw happens once",
            NotDrawn => "this sale has not been drawn yet",
            NoClaim => "only a drawn entry may buy, within its claim window",
        }
    }
}

/// Why a sale refuses a change in its phase (409, code 500750 + its number).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The sale ended or was cancelled: it takes no more changes.
    SaleOver = 0,
    /// `name`, `price`, `salePrice`, `startAt`, `shards`, the waiting room and the rules
    /// (`perBuy`, `perAccount`) are fixed once
    /// the sale is live: orders carry the name and price, shoppers are already spread over the
    /// shards, and a room's rate decides positions already shown.
    FixedOnceLive = 1,
    /// A live sale's end may only move later (cancel stops it now).
    EndEarlierOnceLive = 2,
    /// A live sale's stock is only added to (`addStock`); setting it could undercut what is sold.
    StockOnceLive = 3,
    /// The sale went live while the change was being made; nothing was changed.
    WentLive = 4,
    /// The audit mends Redis only at rest: the sale's queue still has entries, or it moved
    /// while the audit read it.
    NotAtRest = 5,
    /// MySQL disagrees with itself (its stock, its order rows, its duplicate markers): the
    /// audit will not realign Redis to a MySQL that needs a person first.
    MysqlDisagrees = 6,
    /// A draw sale that was drawn is not reset for a repeat run: its entries, draw and claims
    /// are a record shoppers and `flashgate draw verify` rely on.
    Drawn = 7,
}

impl Refusal {
    pub const ALL: [Refusal; 8] = [
        Refusal::SaleOver,
        Refusal::FixedOnceLive,
        Refusal::EndEarlierOnceLive,
        Refusal::StockOnceLive,
        Refusal::WentLive,
        Refusal::NotAtRest,
        Refusal::MysqlDisagrees,
        Refusal::Drawn,
    ];

    pub fn message(self) -> &'static str {
        use Refusal::*;
        match self {
            SaleOver => "the sale has ended or was cancelled; it takes no more changes",
            FixedOnceLive => {
                "name, price, salePrice, startAt, shards and the waiting room are fixed once the \
                 sale is live"
            }
            EndEarlierOnceLive => {
                "a live sale's end may only move later; cancel the sale to stop it now"
            }
            StockOnceLive => "a live sale's stock can only grow: send addStock instead of stock",
            WentLive => "the sale went live while the change was made; nothing was changed",
            NotAtRest => {
                "the sale is not at rest (its queue is not drained); the audit mends Redis only \
                 at rest: try again once the worker has written every order"
            }
            MysqlDisagrees => {
                "MySQL disagrees with itself (see the findings); mend MySQL first, then Redis"
            }
            Drawn => "a draw sale that was drawn is never reset: its draw is a published record",
        }
    }
}

impl From<redis::RedisError> for AppError {
    fn from(e: redis::RedisError) -> Self {
        if crate::plumbing::redis_conn::is_unavailable(&e) {
            tracing::warn!(error = %e, "redis unavailable");
            AppError::Unavailable(Dependency::Redis)
        } else {
            AppError::Internal(anyhow::Error::new(e).context("redis"))
        }
    }
}

impl From<sqlx::Error> for AppError {
    fn from(e: sqlx::Error) -> Self {
        match e {
            sqlx::Error::PoolTimedOut | sqlx::Error::Io(_) | sqlx::Error::PoolClosed => {
                tracing::warn!(error = %e, "mysql unavailable");
                AppError::Unavailable(Dependency::Mysql)
            }
            other => AppError::Internal(anyhow::Error::new(other).context("mysql")),
        }
    }
}

impl From<anyhow::Error> for AppError {
    fn from(e: anyhow::Error) -> Self {
        AppError::Internal(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_refusal_has_a_4xx_and_a_nonzero_code() {
        let all = [
            AppError::BadParam("x".into()),
            AppError::SessionMissing,
            AppError::BadMobile,
            AppError::WrongPassword,
            AppError::SoldOut,
            AppError::Duplicate,
            AppError::NotStarted { starts_in_ms: 1 },
            AppError::Ended,
            AppError::BadPath,
            AppError::WrongCaptcha,
            AppError::TooManyRequests { retry_after_ms: 5 },
            AppError::NotFound,
            AppError::Forbidden,
            AppError::TooLarge,
            AppError::TooManyLogins { retry_after_ms: 5 },
            AppError::BodyTimeout,
            AppError::NotJson,
            AppError::OrderClosed,
            AppError::MethodNotAllowed {
                allow: "GET".into(),
            },
            AppError::UnexpectedBody,
            AppError::TokenMissing,
            AppError::NotYourTurn { position: Some(3) },
            AppError::RoomFull,
            AppError::TooManyStreams,
            AppError::CrossSite,
            AppError::WrongHost,
            AppError::CaptchaLocked { retry_after_ms: 5 },
            AppError::TooManyCaptchas { retry_after_ms: 5 },
            AppError::LoginAtShop,
            AppError::ShopServerOnly,
            AppError::OrderPaid,
            AppError::LimitReached {
                left: 1,
                campaign: true,
            },
            AppError::TooManyUnits { per_buy: 2 },
            AppError::NotEnough { left: 1 },
            AppError::BadQuantity,
            AppError::BadIdempotencyKey,
            AppError::IdempotencyKeyReused,
        ]
        .into_iter()
        .chain(SaleRule::ALL.map(AppError::Invalid))
        .chain(Refusal::ALL.map(AppError::Refused))
        .chain(TokenFault::ALL.map(AppError::ShopToken))
        .chain(GrantFault::ALL.map(AppError::Grant))
        .chain(DrawFault::ALL.map(AppError::Draw));
        let mut codes = std::collections::HashSet::new();
        for e in all {
            assert!(e.status().is_client_error(), "{e:?}");
            assert_ne!(e.code(), 0);
            codes.insert(e.code());
        }
        // every sale rule and refusal has a code of its own
        assert!(
            codes.len()
                >= SaleRule::ALL.len()
                    + Refusal::ALL.len()
                    + TokenFault::ALL.len()
                    + GrantFault::ALL.len()
                    + DrawFault::ALL.len()
        );
        assert_eq!(
            AppError::Unavailable(Dependency::Redis).status(),
            StatusCode::SERVICE_UNAVAILABLE
        );
    }
}
