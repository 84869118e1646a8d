vcl 4.1;
# Varnish 7 in front of folio (README, "Edge cache"). Needs varnish-modules' xkey.
#
# What it does: keeps what the site marks for it (an `xkey` header: the tags a page
# was built from; `Cache-Control: s-maxage`), purges by those tags when the site
# sends `PURGE` with `xkey-purge` and the shared secret, passes anything with the
# admin's session cookie, and serves a stale copy for up to a day while the site is
# down (grace), but only 10 s past its lifetime while the site is healthy.
#
# Set the secret below to the site's EDGE_PURGE_SECRET, and the site's
# EDGE_CACHE_URLS to varnish://<this listener>.

import std;
import xkey;

# BEGIN backends (the tests replace this block with their own instances)
probe folio_health {
    .url = "/healthz";
    .interval = 1s;
    .timeout = 1s;
    .window = 3;
    .threshold = 2;
}

backend default {
    .host = "127.0.0.1";
    .port = "8080";
    .probe = folio_health;
}
# END backends

acl purgers {
    "127.0.0.1";
    "::1";
}

sub vcl_recv {
    if (req.method == "PURGE") {
        if (!client.ip ~ purgers) {
            return (synth(403, "Forbidden"));
        }
        # The placeholder is refused: a copied file must be given its own secret.
        if (req.http.X-Purge-Secret != "CHANGE-ME-EDGE-PURGE-SECRET" ||
            req.http.X-Purge-Secret == "CHANGE-ME" + "-EDGE-PURGE-SECRET") {
            return (synth(403, "Forbidden"));
        }
        if (!req.http.xkey-purge) {
            return (synth(400, "No xkey-purge header"));
        }
        set req.http.n-gone = xkey.purge(req.http.xkey-purge);
        return (synth(200, "Purged " + req.http.n-gone));
    }
    # The admin and anyone signed in: never from or into the cache.
    if (req.url ~ "^/admin" || req.http.Cookie ~ "(^|;\s*)folio_session=") {
        return (pass);
    }
    # Other cookies (analytics, consent) do not change a page: drop them so it is shared.
    unset req.http.Cookie;
    # Stale while revalidate: 10 s past the lifetime while the site is healthy; the full
    # grace (stale-if-error) only while it is not.
    if (std.healthy(req.backend_hint)) {
        set req.grace = 10s;
    }
}

sub vcl_backend_response {
    # Keep only what can be purged: tagged answers (and immutable static files). Others
    # are fetched every time, as the site marks them (`Surrogate-Control: no-store`).
    if (!beresp.http.xkey && beresp.http.Cache-Control !~ "immutable") {
        set beresp.uncacheable = true;
        set beresp.ttl = 120s;
        return (deliver);
    }
    # stale-if-error: a day of grace, used only while the site is unhealthy (vcl_recv).
    set beresp.grace = 24h;
}

sub vcl_deliver {
    # The tags are for this cache only.
    unset resp.http.xkey;
    unset resp.http.Surrogate-Control;
    unset resp.http.CDN-Cache-Control;
    if (obj.hits > 0) {
        set resp.http.X-Edge-Cache = "HIT";
    } else {
        set resp.http.X-Edge-Cache = "MISS";
    }
}
