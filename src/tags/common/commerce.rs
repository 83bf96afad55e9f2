//! Ecommerce helpers every destination needs: amounts and counts as destinations want
//! them, and the totals of an `items` list. All arithmetic is checked: no input wraps a
//! count or produces a non-finite amount.

use crate::event::{float_text, number_text, Num, Val};

/// A money amount as text: numbers are printed; numeric strings are kept as written
/// (`"19.90"` stays `"19.90"`); zero and non-numbers give `None`.
pub fn money(value: &Val<'_>) -> Option<String> {
    match value {
        Val::Num(n) => {
            let f = n.as_f64();
            (f.is_finite() && f != 0.0).then(|| number_text(*n))
        }
        Val::Str(s) => {
            let t = s.trim();
            t.parse::<f64>()
                .ok()
                .filter(|f| f.is_finite() && *f != 0.0)
                .map(|_| t.to_owned())
        }
        _ => None,
    }
}

/// A finite number from a number or a numeric string.
pub fn as_f64(value: &Val<'_>) -> Option<f64> {
    match value {
        Val::Num(n) => Some(n.as_f64()),
        Val::Str(s) => s.trim().parse::<f64>().ok(),
        _ => None,
    }
    .filter(|f| f.is_finite())
}

/// An integer count (`quantity`, `num_items`): numbers and numeric strings, truncated;
/// values beyond the i64 range saturate.
pub fn integer(value: &Val<'_>) -> Option<i64> {
    fn from_f64(f: f64) -> Option<i64> {
        // `as` saturates at the i64 bounds.
        f.is_finite().then(|| f.trunc() as i64)
    }
    match value {
        Val::Num(Num::I(i)) => Some(*i),
        Val::Num(Num::U(u)) => Some(i64::try_from(*u).unwrap_or(i64::MAX)),
        Val::Num(Num::F(f)) => from_f64(*f),
        Val::Str(s) => {
            let t = s.trim();
            t.parse::<i64>()
                .ok()
                .or_else(|| t.parse::<f64>().ok().and_then(from_f64))
        }
        _ => None,
    }
}

/// Rounds away binary noise from sums (`99.98 + 10.5` = `110.48000000000002`).
pub fn round_sum(f: f64) -> f64 {
    (f * 1e6).round() / 1e6
}

/// Σ price × quantity (quantity 1 when absent) over items, as text; `None` when zero or
/// not finite.
pub fn items_total(items: &[Val<'_>]) -> Option<String> {
    let mut total = 0.0;
    for item in items.iter().filter_map(Val::as_obj) {
        if let Some(p) = item.get("price").and_then(as_f64) {
            let q = item.get("quantity").and_then(as_f64).unwrap_or(1.0);
            total += p * q;
        }
    }
    let total = round_sum(total);
    (total.is_finite() && total != 0.0).then(|| float_text(total))
}

/// Σ of integer quantities, saturating; `None` when no item has one.
pub fn total_quantity(items: &[Val<'_>]) -> Option<i64> {
    items
        .iter()
        .filter_map(Val::as_obj)
        .filter_map(|i| i.get("quantity").and_then(integer))
        .fold(None, |acc: Option<i64>, q| {
            Some(acc.unwrap_or(0).saturating_add(q))
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn counts_saturate_instead_of_wrapping() {
        let items =
            json!([{"quantity": 9223372036854775807_i64}, {"quantity": 9223372036854775807_i64}]);
        let Val::Arr(items) = Val::from_json(&items) else {
            panic!()
        };
        assert_eq!(total_quantity(&items), Some(i64::MAX));
        assert_eq!(integer(&Val::from_json(&json!(1e300))), Some(i64::MAX));
        assert_eq!(integer(&Val::from_json(&json!("-1e300"))), Some(i64::MIN));
        assert_eq!(
            integer(&Val::from_json(&json!(18446744073709551615_u64))),
            Some(i64::MAX)
        );
    }

    #[test]
    fn totals_stay_finite() {
        let items = json!([{"price": 1e308, "quantity": 10}, {"price": 2.5}]);
        let Val::Arr(items) = Val::from_json(&items) else {
            panic!()
        };
        assert_eq!(items_total(&items), None);
        let items = json!([{"price": 99.98}, {"price": "10.5", "quantity": "1"}]);
        let Val::Arr(items) = Val::from_json(&items) else {
            panic!()
        };
        assert_eq!(items_total(&items).as_deref(), Some("110.48"));
    }
}
