//! The route table: every route the edge answers, once, as data.
//!
//! A [`Route`] has a method, a path template in OpenAPI's form (`/api/orders/{id}`) and the
//! listener it is served on ([`Surface`]). [`find`] matches a request against the table; the
//! router (`http::route`) dispatches on the [`Route`] it gets. `docs/openapi.yaml` documents the
//! same table, and a test holds the two equal, so neither can drift.

use hyper::Method;

/// Which listener serves a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Surface {
    /// The shoppers' API, on `FLASHGATE_LISTEN` (behind nginx in production).
    Public,
    /// The operators' API, on `FLASHGATE_ADMIN_LISTEN` only (loopback by default).
    Admin,
    /// On the public and the admin listener, for two callers the handler tells apart by the
    /// listener: paying an order (a session shopper on the public one, as the demo's pay button
    /// does; the shop's server on the admin one).
    PublicAndAdmin,
    /// Health and metrics, on both listeners (for probes and Prometheus; nginx does not proxy
    /// them from its public port).
    Ops,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Route {
    Login,
    Logout,
    GoodsList,
    GoodsDetail,
    Captcha,
    Path,
    Buy,
    RoomJoin,
    RoomLook,
    RoomChallenge,
    Events,
    Result,
    Order,
    Pay,
    Close,
    GrantKeys,
    GrantRedeem,
    DrawShow,
    DrawChallenge,
    DrawEnter,
    DrawPublished,
    AdminListSales,
    AdminCreateSale,
    AdminShowSale,
    AdminUpdateSale,
    AdminCancelSale,
    AdminAuditSale,
    AdminSaleSeries,
    AdminResetSale,
    AdminReloadScripts,
    AdminLuaStatus,
    AdminLuaCheck,
    AdminLuaRelease,
    AdminLuaPromote,
    AdminLuaRollback,
    Healthz,
    Readyz,
    Metrics,
}

impl Route {
    pub const ALL: [Route; 38] = [
        Route::Login,
        Route::Logout,
        Route::GoodsList,
        Route::GoodsDetail,
        Route::Captcha,
        Route::Path,
        Route::Buy,
        Route::RoomJoin,
        Route::RoomLook,
        Route::RoomChallenge,
        Route::Events,
        Route::Result,
        Route::Order,
        Route::Pay,
        Route::Close,
        Route::GrantKeys,
        Route::GrantRedeem,
        Route::DrawShow,
        Route::DrawChallenge,
        Route::DrawEnter,
        Route::DrawPublished,
        Route::AdminListSales,
        Route::AdminCreateSale,
        Route::AdminShowSale,
        Route::AdminUpdateSale,
        Route::AdminCancelSale,
        Route::AdminAuditSale,
        Route::AdminSaleSeries,
        Route::AdminResetSale,
        Route::AdminReloadScripts,
        Route::AdminLuaStatus,
        Route::AdminLuaCheck,
        Route::AdminLuaRelease,
        Route::AdminLuaPromote,
        Route::AdminLuaRollback,
        Route::Healthz,
        Route::Readyz,
        Route::Metrics,
    ];

    /// Method, path template, surface.
    pub fn spec(self) -> (Method, &'static str, Surface) {
        use Surface::*;
        match self {
            Route::Login => (Method::POST, "/api/login", Public),
            Route::Logout => (Method::POST, "/api/logout", Public),
            Route::GoodsList => (Method::GET, "/api/goods", Public),
            Route::GoodsDetail => (Method::GET, "/api/goods/{id}", Public),
            Route::Captcha => (Method::GET, "/api/seckill/captcha", Public),
            Route::Path => (Method::GET, "/api/seckill/path", Public),
            Route::Buy => (Method::POST, "/api/seckill/{path}/orders", Public),
            Route::RoomJoin => (Method::POST, "/api/seckill/room", Public),
            Route::RoomLook => (Method::GET, "/api/seckill/room", Public),
            Route::RoomChallenge => (Method::GET, "/api/seckill/room/challenge", Public),
            Route::Events => (Method::GET, "/api/seckill/events", Public),
            Route::Result => (Method::GET, "/api/seckill/result", Public),
            Route::Order => (Method::GET, "/api/orders/{id}", Public),
            Route::Pay => (Method::POST, "/api/orders/{id}/pay", PublicAndAdmin),
            Route::Close => (Method::POST, "/api/orders/{id}/close", Admin),
            Route::GrantKeys => (Method::GET, "/.well-known/jwks.json", Public),
            Route::GrantRedeem => (Method::POST, "/api/grants/redeem", Admin),
            Route::DrawShow => (Method::GET, "/api/draws/{goodsId}", Public),
            Route::DrawChallenge => (Method::GET, "/api/draws/{goodsId}/challenge", Public),
            Route::DrawEnter => (Method::POST, "/api/draws/{goodsId}/entries", Public),
            Route::DrawPublished => (Method::GET, "/api/draws/{goodsId}/published", Public),
            Route::AdminListSales => (Method::GET, "/api/admin/sales", Admin),
            Route::AdminCreateSale => (Method::POST, "/api/admin/sales", Admin),
            Route::AdminShowSale => (Method::GET, "/api/admin/sales/{id}", Admin),
            Route::AdminUpdateSale => (Method::PATCH, "/api/admin/sales/{id}", Admin),
            Route::AdminCancelSale => (Method::POST, "/api/admin/sales/{id}/cancel", Admin),
            Route::AdminAuditSale => (Method::GET, "/api/admin/sales/{id}/audit", Admin),
            Route::AdminSaleSeries => (Method::GET, "/api/admin/sales/{id}/series", Admin),
            Route::AdminResetSale => (Method::POST, "/api/admin/sales/{id}/reset", Admin),
            Route::AdminReloadScripts => (Method::POST, "/api/admin/scripts/reload", Admin),
            Route::AdminLuaStatus => (Method::GET, "/api/admin/lua", Admin),
            Route::AdminLuaCheck => (Method::POST, "/api/admin/lua/check", Admin),
            Route::AdminLuaRelease => (Method::POST, "/api/admin/lua/releases", Admin),
            Route::AdminLuaPromote => (Method::POST, "/api/admin/lua/promote", Admin),
            Route::AdminLuaRollback => (Method::POST, "/api/admin/lua/rollback", Admin),
            Route::Healthz => (Method::GET, "/healthz", Ops),
            Route::Readyz => (Method::GET, "/readyz", Ops),
            Route::Metrics => (Method::GET, "/metrics", Ops),
        }
    }

    pub fn method(self) -> Method {
        self.spec().0
    }
    pub fn template(self) -> &'static str {
        self.spec().1
    }
    pub fn surface(self) -> Surface {
        self.spec().2
    }

    /// Whether the route reads a request body. One that does not takes none: an empty body,
    /// or `{}` on a `POST` (what the pages send: every state-changing request is JSON, see
    /// `respond::require_json`); anything else is refused before the handler runs
    /// (`respond::no_body`), so no body is ever silently ignored.
    pub fn takes_body(self) -> bool {
        matches!(
            self,
            Route::Login
                | Route::Buy
                | Route::RoomJoin
                | Route::DrawEnter
                | Route::GrantRedeem
                | Route::AdminCreateSale
                | Route::AdminUpdateSale
                | Route::AdminResetSale
                | Route::AdminLuaCheck
                | Route::AdminLuaRelease
                | Route::AdminLuaRollback
        )
    }

    /// The metrics label of the route's family (`flashgate_request_seconds{route=…}`).
    pub fn family(self) -> &'static str {
        match self {
            Route::Buy => "buy",
            Route::Result => "result",
            Route::Path | Route::Captcha => "path",
            Route::RoomJoin | Route::RoomLook | Route::RoomChallenge => "room",
            Route::Events => "events",
            Route::GoodsList | Route::GoodsDetail => "goods",
            Route::Login | Route::Logout => "auth",
            Route::DrawShow | Route::DrawChallenge | Route::DrawEnter | Route::DrawPublished => {
                "draw"
            }
            _ => "other",
        }
    }

    /// The template's `{…}` segment (every route has at most one) filled from the path's
    /// `segments`, if they have the template's shape: `Some(None)` for a route without one.
    fn matches<'p>(self, segments: &[&'p str]) -> Option<Option<&'p str>> {
        let mut want = self.template().trim_start_matches('/').split('/');
        let mut param = None;
        for got in segments {
            let w = want.next()?;
            if w.starts_with('{') {
                if got.is_empty() {
                    return None;
                }
                param = Some(*got);
            } else if w != *got {
                return None;
            }
        }
        want.next().is_none().then_some(param)
    }
}

/// What the table says of a request.
#[derive(Debug, PartialEq, Eq)]
pub enum Found<'p> {
    /// This route, with its path parameter if it has one.
    Route(Route, Option<&'p str>),
    /// The path is a route's, on this surface, but not for this method: the methods it takes
    /// (for the 405's `Allow`).
    WrongMethod(Vec<Method>),
    /// No route of this surface has this path.
    None,
}

/// Looks `method path` up among the routes served on `surface` (and the ops routes).
pub fn find<'p>(surface: Surface, method: &Method, path: &'p str) -> Found<'p> {
    // split once; at most five segments in any route, so more cannot match
    let mut segments = [""; 6];
    let mut n = 0;
    for seg in path.trim_start_matches('/').split('/') {
        if n == segments.len() {
            return Found::None;
        }
        segments[n] = seg;
        n += 1;
    }
    let segments = &segments[..n];
    let mut allowed = Vec::new();
    for route in Route::ALL {
        let served = route.surface() == surface
            || route.surface() == Surface::Ops
            || (route.surface() == Surface::PublicAndAdmin && surface != Surface::Ops);
        if !served {
            continue;
        }
        if let Some(param) = route.matches(segments) {
            if route.method() == *method {
                return Found::Route(route, param);
            }
            allowed.push(route.method());
        }
    }
    if allowed.is_empty() {
        Found::None
    } else {
        Found::WrongMethod(allowed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_find_their_route_and_parameters() {
        assert_eq!(
            find(Surface::Public, &Method::POST, "/api/seckill/abc/orders"),
            Found::Route(Route::Buy, Some("abc"))
        );
        assert_eq!(
            find(Surface::Public, &Method::GET, "/api/seckill/result"),
            Found::Route(Route::Result, None)
        );
        assert_eq!(
            find(Surface::Public, &Method::GET, "/api/seckill/abc/orders"),
            Found::WrongMethod(vec![Method::POST])
        );
        assert_eq!(
            find(Surface::Public, &Method::PUT, "/api/seckill/room"),
            Found::WrongMethod(vec![Method::POST, Method::GET])
        );
        // the admin listener's methods of a path only: pay, not close, in public
        assert_eq!(
            find(Surface::Public, &Method::GET, "/api/orders/7/close"),
            Found::None
        );
        assert_eq!(
            find(Surface::Public, &Method::GET, "/api/orders/"),
            Found::None
        );
        assert_eq!(
            find(Surface::Public, &Method::GET, "/index.html"),
            Found::None
        );
        // the admin routes are not on the public surface, the ops routes are on both
        assert_eq!(
            find(Surface::Public, &Method::POST, "/api/admin/scripts/reload"),
            Found::None
        );
        assert_eq!(
            find(Surface::Admin, &Method::POST, "/api/admin/scripts/reload"),
            Found::Route(Route::AdminReloadScripts, None)
        );
        assert_eq!(
            find(Surface::Admin, &Method::GET, "/metrics"),
            Found::Route(Route::Metrics, None)
        );
        assert_eq!(
            find(Surface::Admin, &Method::GET, "/api/goods"),
            Found::None
        );
        // paying: the shopper's listener and the shop server's; closing: the shop server's only
        for surface in [Surface::Public, Surface::Admin] {
            assert_eq!(
                find(surface, &Method::POST, "/api/orders/7/pay"),
                Found::Route(Route::Pay, Some("7"))
            );
        }
        assert_eq!(
            find(Surface::Ops, &Method::POST, "/api/orders/7/pay"),
            Found::None
        );
        assert_eq!(
            find(Surface::Public, &Method::POST, "/api/orders/7/close"),
            Found::None
        );
        assert_eq!(
            find(Surface::Admin, &Method::POST, "/api/orders/7/close"),
            Found::Route(Route::Close, Some("7"))
        );
    }

    #[test]
    fn no_two_routes_share_a_method_and_a_template() {
        let mut seen = std::collections::HashSet::new();
        for r in Route::ALL {
            assert!(seen.insert((r.method(), r.template())), "{r:?}");
        }
    }
}
