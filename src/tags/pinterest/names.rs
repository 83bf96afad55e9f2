//! Pinterest event names and the built-in GA4 → Pinterest tables (`pinterest-tag.md` §2).

/// Event names Pinterest accepts (spec 5.16+; `app_install` since 5.20).
pub const STANDARD_EVENTS: &[&str] = &[
    "page_visit",
    "add_to_cart",
    "checkout",
    "lead",
    "search",
    "signup",
    "view_category",
    "watch_video",
    "custom",
    "add_payment_info",
    "add_to_wishlist",
    "initiate_checkout",
    "subscribe",
    "view_content",
    "app_install",
];

/// `user_data` keys of the Conversions API.
pub const USER_DATA_KEYS: &[&str] = &[
    "em",
    "ph",
    "ge",
    "db",
    "ln",
    "fn",
    "ct",
    "st",
    "zp",
    "country",
    "external_id",
    "hashed_maids",
    "client_ip_address",
    "client_user_agent",
    "click_id",
    "partner_id",
];

/// `custom_data` keys of the Conversions API (5.23).
pub const CUSTOM_DATA_KEYS: &[&str] = &[
    "currency",
    "value",
    "content_ids",
    "contents",
    "num_items",
    "order_id",
    "search_string",
    "opt_out_type",
    "np",
    "content_name",
    "content_category",
    "content_brand",
    "predicted_ltv",
    "external_measurement_id",
    "external_measurement_vendor_id",
];

pub fn is_standard(name: &str) -> bool {
    STANDARD_EVENTS.contains(&name)
}

/// Rows shared by both tables: (GA4 name, Pinterest name). Keys are lowercase.
const COMMON: &[(&str, &str)] = &[
    ("page_view", "page_visit"),
    ("gtm.dom", "page_visit"),
    ("add_to_cart", "add_to_cart"),
    ("gtm4wp.addproducttocarteec", "add_to_cart"),
    ("purchase", "checkout"),
    ("gtm4wp.checkoutoptioneec", "checkout"),
    ("gtm4wp.ordercompletedeec", "checkout"),
    ("sign_up", "signup"),
    ("generate_lead", "lead"),
    ("contact", "lead"),
    ("submit_application", "lead"),
    ("search", "search"),
    ("find_location", "search"),
    ("view_item_list", "view_category"),
];

/// Rows where the tables differ: (GA4 name, stape, native).
const DIVERGENT: &[(&str, &str, &str)] = &[
    ("view_item", "custom", "view_content"),
    ("begin_checkout", "custom", "initiate_checkout"),
    ("add_to_wishlist", "custom", "add_to_wishlist"),
    ("add_payment_info", "custom", "add_payment_info"),
    ("subscribe", "custom", "subscribe"),
    ("video_start", "custom", "watch_video"),
];

/// Looks a lowercased, trimmed GA4 name up in the chosen table.
/// Names found nowhere (including `customize_product`, `donate`, ...) are `custom`.
pub fn table_lookup(name: &str, stape: bool) -> Option<&'static str> {
    COMMON
        .iter()
        .find(|(k, _)| *k == name)
        .map(|(_, v)| *v)
        .or_else(|| {
            DIVERGENT
                .iter()
                .find(|(k, _, _)| *k == name)
                .map(|(_, s, n)| if stape { *s } else { *n })
        })
}
