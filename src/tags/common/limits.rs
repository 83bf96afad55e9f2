//! Size caps applied while mapping, so what one request puts into the queue and sends
//! downstream is bounded by its own size (README, "Hostile input"): a shared value (the
//! page URL, the User-Agent) repeated in every event of a batch cannot multiply it.

use std::borrow::Cow;

/// Longest `User-Agent` sent (real ones are under 300 bytes).
pub const MAX_USER_AGENT: usize = 512;
/// Longest URL sent (`event_source_url`).
pub const MAX_URL: usize = 2048;
/// Longest other text value sent (ids, names, categories, click ids).
pub const MAX_TEXT: usize = 1024;
/// Most items (`contents`, `content_ids`) sent for one event.
pub const MAX_ITEMS: usize = 200;
/// Largest mapped event queued; a larger one is refused (counted, logged once).
pub const MAX_EVENT_BYTES: usize = 32 << 10;

/// `s` cut to at most `max` bytes on a char boundary.
pub fn clip(s: &str, max: usize) -> &str {
    crate::queue::format::clip(s, max)
}

/// A `Cow` cut to at most `max` bytes (borrowed stays borrowed).
pub fn clip_cow(s: Cow<'_, str>, max: usize) -> Cow<'_, str> {
    if s.len() <= max {
        return s;
    }
    match s {
        Cow::Borrowed(b) => Cow::Borrowed(clip(b, max)),
        Cow::Owned(o) => Cow::Owned(clip(&o, max).to_owned()),
    }
}
