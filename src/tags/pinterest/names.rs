//! Pinterest's names: event names and the built-in GA4 → Pinterest tables (§2), the
//! `user_data` keys with their sources (§4) and hashing rules (§5), and the match keys the
//! debug page and metrics report.

use crate::tags::common::hashing::Rule;

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

/// `user_data` sources, in precedence order (§4). `@address.` = `user_data.address` (object,
/// or the first element of an array).
pub const USER_SOURCES: &[(&str, &[&str])] = &[
    ("external_id", &["external_id", "user_id", "userId"]),
    (
        "ln",
        &[
            "lastName",
            "LastName",
            "nameLast",
            "last_name",
            "user_data.last_name",
            "@address.last_name",
        ],
    ),
    (
        "fn",
        &[
            "firstName",
            "FirstName",
            "nameFirst",
            "first_name",
            "user_data.first_name",
            "@address.first_name",
        ],
    ),
    (
        "em",
        &["email", "user_data.email_address", "user_data.email"],
    ),
    ("ph", &["phone", "user_data.phone_number"]),
    ("ct", &["city", "@address.city"]),
    (
        "st",
        &["state", "region", "user_data.region", "@address.region"],
    ),
    (
        "zp",
        &[
            "zip",
            "postal_code",
            "user_data.postal_code",
            "@address.postal_code",
        ],
    ),
    (
        "country",
        &[
            "countryCode",
            "country",
            "user_data.country",
            "@address.country",
        ],
    ),
    ("ge", &["gender"]),
    ("db", &["db"]),
    ("hashed_maids", &["hashed_maids"]),
];

/// The hashing rule of a `user_data` key; `None` for keys sent as plain text
/// (`client_ip_address`, `client_user_agent`, `click_id`, `partner_id`).
pub fn hash_rule(key: &str) -> Option<Rule> {
    Some(match key {
        "ph" => Rule::Phone,
        "ct" => Rule::City,
        "ge" => Rule::Gender,
        "db" => Rule::Date,
        "zp" => Rule::Zip,
        "em" | "ln" | "fn" | "st" | "country" | "external_id" | "hashed_maids" => Rule::Plain,
        _ => return None,
    })
}

/// The keys Pinterest matches conversions on; `a+b` means both together.
pub const MATCH_KEYS: &[&str] = &[
    "em",
    "ph",
    "external_id",
    "click_id",
    "client_ip_address+client_user_agent",
    "fn",
    "ln",
    "ct",
    "zp",
    "country",
    "hashed_maids",
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashed_keys_are_the_api_s() {
        let hashed: Vec<&str> = USER_DATA_KEYS
            .iter()
            .copied()
            .filter(|k| hash_rule(k).is_some())
            .collect();
        assert_eq!(
            hashed.join(" "),
            "em ph ge db ln fn ct st zp country external_id hashed_maids"
        );
        for (key, _) in USER_SOURCES {
            assert!(hash_rule(key).is_some(), "{key}");
        }
    }
}
