//! Normalization and SHA-256 hashing of user data, the way conversion APIs match on it
//! (Pinterest's documented rules; Meta and TikTok use the same ones).
//!
//! Every hashed field is sent as an array of lowercase hex SHA-256 strings; an array input
//! is handled element by element, in order, without dedup, and at most
//! [`MAX_VALUES_PER_KEY`] of them (the rest are dropped and counted). For each element: a
//! number becomes its decimal text and a bool `true`/`false`; the text is trimmed and
//! dropped if empty; a value that is already 64 hex characters is sent lowercased and
//! unhashed. Anything else is NFC-normalized and lowercased, then gets its [`Rule`]:
//!
//! - [`Rule::Phone`]: ASCII digits only, then leading zeros stripped
//!   (`+1 (555) 123-4567` -> `15551234567`).
//! - [`Rule::City`]: letters of any script (with their combining marks) and digits only;
//!   whitespace, punctuation and symbols removed (`St. Louis-Park` -> `stlouispark`).
//! - [`Rule::Gender`]: `f`/`female`/`woman` -> `f`, `m`/`male`/`man` -> `m`,
//!   `n`/`non-binary`/`nonbinary`/`non binary` -> `n`; anything else dropped (counted,
//!   never logged).
//! - [`Rule::Date`]: `YYYY-MM-DD`, `YYYY/MM/DD`, `YYYY.MM.DD`, `YYYYMMDD` -> `YYYYMMDD`;
//!   other forms are hashed as they are.
//! - [`Rule::Zip`]: whitespace and `-` removed; a US ZIP or ZIP+4 (5 or 9 digits) is cut
//!   to its first 5 digits (`94107-1234` -> `94107`), other postcodes are kept stripped
//!   (`SW1A 1AA` -> `sw1a1aa`).
//! - [`Rule::Plain`] (e-mail, names, state, country, external id, mobile ad ids): nothing
//!   beyond trim + lowercase.
//!
//! A value that normalizes to empty is dropped, so an empty result means "send nothing for
//! this key". Which wire key gets which rule is each destination's table.

use sha2::{Digest, Sha256};
use unicode_normalization::{char::is_combining_mark, UnicodeNormalization};

use crate::event::{Num, Val};

/// Most values sent for one hashed key (Pinterest expects a handful); later ones are
/// dropped and counted.
pub const MAX_VALUES_PER_KEY: usize = 10;
/// Longest value hashed; longer text cannot be a real e-mail, name or phone number and is
/// dropped.
pub const MAX_VALUE_BYTES: usize = 1024;

/// The extra normalization a hashed field gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Rule {
    Phone,
    City,
    Gender,
    Date,
    Zip,
    Plain,
}

/// What hashing dropped, for one aggregated log line and the counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Dropped {
    /// Values past [`MAX_VALUES_PER_KEY`] (or over [`MAX_VALUE_BYTES`]).
    pub excess_values: u32,
    /// Gender values that are none of the known forms.
    pub unknown_gender: u32,
}

impl Dropped {
    pub fn add(&mut self, other: Dropped) {
        self.excess_values += other.excess_values;
        self.unknown_gender += other.unknown_gender;
    }
    pub fn any(&self) -> bool {
        self.excess_values > 0 || self.unknown_gender > 0
    }
}

/// Lowercase hex SHA-256 of the UTF-8 bytes.
pub fn sha256_hex(input: &str) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let digest = Sha256::digest(input.as_bytes());
    let mut hex = Vec::with_capacity(64);
    for b in digest {
        hex.push(HEX[usize::from(b >> 4)]);
        hex.push(HEX[usize::from(b & 0x0f)]);
    }
    // Hex digits are ASCII: this never fails.
    String::from_utf8(hex).unwrap_or_default()
}

/// Normalizes one scalar text value for `key` (before hashing). Returns None when the value is
/// dropped. Does NOT do the 64-hex passthrough (that is in [`hash_value`]).
///
/// NFC comes first so that the same visible text (e.g. `São` typed as `a` +
/// U+0303 or as precomposed `ã`) always hashes to the same digest.
pub fn normalize(rule: Rule, raw: &str) -> Option<String> {
    let trimmed = raw.trim();
    // NFC leaves ASCII unchanged: skip the decomposition work for the common case.
    let text = if trimmed.is_ascii() {
        trimmed.to_ascii_lowercase()
    } else {
        trimmed.nfc().collect::<String>().to_lowercase()
    };
    let out = match rule {
        Rule::Phone => normalize_phone(&text),
        // Letters of any script and digits, plus combining marks: after NFC a
        // mark that remains is part of its letter in that script (Devanagari
        // virama U+094D, Thai tone marks), so dropping it would change the word.
        Rule::City => text
            .chars()
            .filter(|c| c.is_alphanumeric() || is_combining_mark(*c))
            .collect(),
        Rule::Gender => normalize_gender(&text)?.to_owned(),
        Rule::Date => normalize_date(&text),
        Rule::Zip => normalize_zip(&text),
        Rule::Plain => text,
    };
    (!out.is_empty()).then_some(out)
}

/// Pinterest wants the number with country code as digits only and without
/// leading zeros, so an international `00` prefix and a `+` end up the same.
fn normalize_phone(text: &str) -> String {
    let digits: String = text.chars().filter(char::is_ascii_digit).collect();
    digits.trim_start_matches('0').to_owned()
}

/// Pinterest accepts only `f`, `m` and `n`; hashing any other spelling would
/// send a value that can never match, so it is dropped instead.
fn normalize_gender(text: &str) -> Option<&'static str> {
    match text {
        "f" | "female" | "woman" => Some("f"),
        "m" | "male" | "man" => Some("m"),
        "n" | "non-binary" | "nonbinary" | "non binary" => Some("n"),
        // Personal data: never logged; the caller counts it.
        _ => None,
    }
}

/// Year-month-day forms become `YYYYMMDD` (Pinterest's documented format);
/// anything ambiguous (e.g. `26.12.1996`) is left alone rather than guessed.
fn normalize_date(text: &str) -> String {
    let b = text.as_bytes();
    let digits_at = |range: std::ops::Range<usize>| b[range].iter().all(u8::is_ascii_digit);
    if b.len() == 8 && digits_at(0..8) {
        return text.to_owned();
    }
    if b.len() == 10
        && matches!(b[4], b'-' | b'/' | b'.')
        && b[7] == b[4]
        && digits_at(0..4)
        && digits_at(5..7)
        && digits_at(8..10)
    {
        // All bytes checked are ASCII, so these slices sit on char boundaries.
        return format!("{}{}{}", &text[0..4], &text[5..7], &text[8..10]);
    }
    text.to_owned()
}

/// US ZIP+4 is cut to the 5-digit ZIP that Pinterest matches on; other
/// postcodes only lose spaces and dashes (`123456` stays 6 digits).
fn normalize_zip(text: &str) -> String {
    let stripped: String = text
        .chars()
        .filter(|c| !c.is_whitespace() && *c != '-')
        .collect();
    let all_digits = stripped.bytes().all(|b| b.is_ascii_digit());
    if all_digits && (stripped.len() == 5 || stripped.len() == 9) {
        stripped[..5].to_owned()
    } else {
        stripped
    }
}

/// True for a value that is already a SHA-256 hex digest (any case).
fn is_sha256_hex(text: &str) -> bool {
    text.len() == 64 && text.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Decimal text of a JSON scalar; `None` for null, objects and arrays.
fn scalar_text<'v>(value: &'v Val<'_>) -> Option<std::borrow::Cow<'v, str>> {
    use std::borrow::Cow;
    Some(match value {
        Val::Str(s) => Cow::Borrowed(s.as_ref()),
        Val::Bool(b) => Cow::Borrowed(if *b { "true" } else { "false" }),
        // std's f64 Display prints `12345.0` as `12345` and never uses an exponent.
        Val::Num(Num::I(i)) => Cow::Owned(i.to_string()),
        Val::Num(Num::U(u)) => Cow::Owned(u.to_string()),
        Val::Num(Num::F(f)) => Cow::Owned(f.to_string()),
        Val::Null | Val::Arr(_) | Val::Obj(_) => return None,
    })
}

/// One scalar element to its wire string, or `None` when it is dropped.
fn hash_scalar(rule: Rule, value: &Val<'_>, dropped: &mut Dropped) -> Option<String> {
    let text = scalar_text(value)?;
    let text = text.trim();
    if text.is_empty() {
        return None;
    }
    if text.len() > MAX_VALUE_BYTES {
        dropped.excess_values += 1;
        return None;
    }
    if is_sha256_hex(text) {
        // Callers may hash upstream; hashing again would never match.
        return Some(text.to_ascii_lowercase());
    }
    let normalized = normalize(rule, text);
    if normalized.is_none() && rule == Rule::Gender {
        dropped.unknown_gender += 1;
    }
    normalized.map(|n| sha256_hex(&n))
}

/// Turns one value (string, number, bool, or array of those) into the strings sent for a
/// key with `rule`: each element trimmed; empty dropped; a 64-hex-char value passed through
/// lowercased; otherwise [`normalize`] then [`sha256_hex`]. null, objects and nested arrays
/// are dropped. Order preserved, no dedup, at most [`MAX_VALUES_PER_KEY`] values. An empty
/// Vec means "send nothing for this key".
pub fn hash_value(rule: Rule, value: &Val<'_>, dropped: &mut Dropped) -> Vec<String> {
    match value {
        Val::Arr(items) => {
            let mut out = Vec::new();
            for (i, v) in items.iter().enumerate() {
                if out.len() == MAX_VALUES_PER_KEY {
                    dropped.excess_values += (items.len() - i) as u32;
                    break;
                }
                if let Some(h) = hash_scalar(rule, v, dropped) {
                    out.push(h);
                }
            }
            out
        }
        other => hash_scalar(rule, other, dropped).into_iter().collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    /// Pinterest's wire names (its own table lives with the Pinterest tag).
    fn rule_of(key: &str) -> Option<Rule> {
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

    const ALL: [Rule; 6] = [
        Rule::Phone,
        Rule::City,
        Rule::Gender,
        Rule::Date,
        Rule::Zip,
        Rule::Plain,
    ];

    fn hv(rule: Rule, v: &Value) -> Vec<String> {
        hash_value(rule, &Val::from_json(v), &mut Dropped::default())
    }

    #[test]
    fn sha256_hex_is_lowercase_hex() {
        let want = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";
        assert_eq!(sha256_hex("test"), want);
    }

    /// Every rule example: `key|"raw" (JSON string)|normalized|hash` rows. An
    /// empty normalized value means the value is dropped and nothing is sent.
    #[test]
    fn rule_examples() {
        let rows = r#"
            ph|"+1 (555) 123-4567"|15551234567|d6736136ea896c1bfdc553e0e86e702c70d060d805696ca3e4e9e0961353860a
            ph|"0044.7700.900123"|447700900123|033134b911b137918338415ee3d20a064b24773d36a3b02e8b99fdd3fcd6b4cd
            ph|"tel: +1 555 010 9999 ext"|15550109999|91a02cd9e0fdea8309e2361e0c1d2eb133b283c1cc08d5562185d25a613783af
            ph|"\u0661\u0662"||
            ph|"000"||
            ph|"n/a"||
            ct|"St. Louis-Park"|stlouispark|032ef390959f62ccaa3e6ba16bbd7c65d3f955457c8824b34460c1e7d2d4e46c
            ct|"São Paulo"|sãopaulo|3eda1428ae1aece064071f8d40f08fe2bc59ffa66c171a163caf15122ec4d7f0
            ct|"Sa\u0303o Paulo"|sãopaulo|3eda1428ae1aece064071f8d40f08fe2bc59ffa66c171a163caf15122ec4d7f0
            ct|"  Rio de Janeiro "|riodejaneiro|f1b5cb813c226fd2583edf275f51bfff0a70c162c9ee81bda595e0e5da213e4f
            ct|"東京 (Tokyo) #1"|東京tokyo1|fcc722e524ebd9747f7239a9bb44a88cd3c9b065aedd314fbc561d556cc3c275
            ct|" - . "||
            ge|"f"|f|252f10c83610ebca1a059c0bae8255eba2f95be4d1d7bcfa89d7248a82d9f111
            ge|"Female"|f|252f10c83610ebca1a059c0bae8255eba2f95be4d1d7bcfa89d7248a82d9f111
            ge|"WOMAN"|f|252f10c83610ebca1a059c0bae8255eba2f95be4d1d7bcfa89d7248a82d9f111
            ge|"m"|m|62c66a7a5dd70c3146618063c344e531e6d4b59e379808443ce962b3abd63c5a
            ge|" Male "|m|62c66a7a5dd70c3146618063c344e531e6d4b59e379808443ce962b3abd63c5a
            ge|"man"|m|62c66a7a5dd70c3146618063c344e531e6d4b59e379808443ce962b3abd63c5a
            ge|"n"|n|1b16b1df538ba12dc3f97edbb85caa7050d46c148134290feba80f8236c83db9
            ge|"Non-Binary"|n|1b16b1df538ba12dc3f97edbb85caa7050d46c148134290feba80f8236c83db9
            ge|"nonbinary"|n|1b16b1df538ba12dc3f97edbb85caa7050d46c148134290feba80f8236c83db9
            ge|"non binary"|n|1b16b1df538ba12dc3f97edbb85caa7050d46c148134290feba80f8236c83db9
            ge|"xyz"||
            ge|"non  binary"||
            db|"1996-12-26"|19961226|70d1ffe461872f01adea43dd228695a5550630f5675c7570f57f4a744eca336f
            db|"1996/12/26"|19961226|70d1ffe461872f01adea43dd228695a5550630f5675c7570f57f4a744eca336f
            db|"1996.12.26"|19961226|70d1ffe461872f01adea43dd228695a5550630f5675c7570f57f4a744eca336f
            db|" 19961226 "|19961226|70d1ffe461872f01adea43dd228695a5550630f5675c7570f57f4a744eca336f
            db|"26.12.1996"|26.12.1996|12093379afab33d8c5d5723e946ae61a6cc91a7a651b3646bf23cd48f0fded39
            db|"1996-12/26"|1996-12/26|e10a9c7dc655a696ec17ff17cf53e482a660387052023fd1e02497573e9b761e
            db|"Dec 26 1996"|dec 26 1996|3927ca8f546c549cfce49dac400b8bddf33f310ff199a3f689990e9fcea68f8a
            db|"１９９６-１２-２６"|１９９６-１２-２６|8d859a6a1dc00c6b4123c409c309c0f89a0022574d08a7893d3c481e76edbb79
            zp|"94107"|94107|c884a209ebe08750a7d13db63bd02233b375bd79786cbe329ab11586cc35dead
            zp|"94107-1234"|94107|c884a209ebe08750a7d13db63bd02233b375bd79786cbe329ab11586cc35dead
            zp|"941071234"|94107|c884a209ebe08750a7d13db63bd02233b375bd79786cbe329ab11586cc35dead
            zp|"94107 1234"|94107|c884a209ebe08750a7d13db63bd02233b375bd79786cbe329ab11586cc35dead
            zp|"SW1A 1AA"|sw1a1aa|830e1d4b9838bab1f5c2acdb23e0b502ff13a9832c4632e8d67a1d43d3b7f614
            zp|"123456"|123456|8d969eef6ecad3c29a3a629280e686cf0c3f5d5a86aff3ca12020c923adc6c92
            zp|"1234"|1234|03ac674216f3e15c761ee1a5e255f067953623c8b388b4459e13f978d7c846f4
            zp|" - "||
            em|"  A b-C.  "|a b-c.|3cbeef255650cb66ef1e4d03b7fb760586848ab8edb9cb2a102762fead8e0118
            ln|"  A b-C.  "|a b-c.|3cbeef255650cb66ef1e4d03b7fb760586848ab8edb9cb2a102762fead8e0118
            fn|"  A b-C.  "|a b-c.|3cbeef255650cb66ef1e4d03b7fb760586848ab8edb9cb2a102762fead8e0118
            st|"  A b-C.  "|a b-c.|3cbeef255650cb66ef1e4d03b7fb760586848ab8edb9cb2a102762fead8e0118
            country|"  A b-C.  "|a b-c.|3cbeef255650cb66ef1e4d03b7fb760586848ab8edb9cb2a102762fead8e0118
            external_id|"  A b-C.  "|a b-c.|3cbeef255650cb66ef1e4d03b7fb760586848ab8edb9cb2a102762fead8e0118
            hashed_maids|"  A b-C.  "|a b-c.|3cbeef255650cb66ef1e4d03b7fb760586848ab8edb9cb2a102762fead8e0118
        "#;
        for line in rows.lines().map(str::trim).filter(|l| !l.is_empty()) {
            let f: Vec<&str> = line.split('|').collect();
            let key = rule_of(f[0]).unwrap();
            let raw: Value = serde_json::from_str(f[1]).unwrap();
            let want = (!f[2].is_empty()).then(|| f[2].to_owned());
            assert_eq!(normalize(key, raw.as_str().unwrap()), want, "{line}");
            let hashes: Vec<&str> = [f[3]].into_iter().filter(|h| !h.is_empty()).collect();
            assert_eq!(hv(key, &raw), hashes, "{line}");
        }
    }

    #[test]
    fn json_shapes() {
        let one = |key, v: Value, plain: &str| assert_eq!(hv(key, &v), [sha256_hex(plain)]);
        one(Rule::Plain, json!(12345), "12345");
        one(Rule::Plain, json!(12345.0), "12345");
        one(Rule::Plain, json!(-7), "-7");
        one(Rule::Plain, json!(1.5), "1.5");
        one(Rule::Plain, json!(u64::MAX), "18446744073709551615");
        one(Rule::Plain, json!(true), "true");
        one(Rule::Plain, json!(false), "false");
        for v in [
            json!(null),
            json!({"a": "b"}),
            json!([]),
            json!(""),
            json!("   "),
        ] {
            assert!(hv(Rule::Plain, &v).is_empty(), "{v}");
        }
        // Nested arrays, nulls and objects inside an array are dropped; order kept, no dedup.
        let v = json!(["A@x.com", ["b@y.com"], null, {"x": 1}, "", "a@x.com"]);
        let a = sha256_hex("a@x.com");
        assert_eq!(hv(Rule::Plain, &v), [a.clone(), a]);
    }

    #[test]
    fn prehashed_passthrough() {
        let upper = "C551027F06BD3F307CCD6ABB61EDC500DEF2680944C010E932AB5B27A3A8F151";
        let lower = upper.to_ascii_lowercase();
        for k in ALL {
            let v = json!(format!("  {upper} "));
            assert_eq!(hv(k, &v), [lower.as_str()], "{k:?}");
        }
        // 63 hex chars, or a non-hex char, are ordinary values and get hashed.
        let short = json!(&upper[..63]);
        assert_eq!(hv(Rule::Plain, &short), [sha256_hex(&lower[..63])]);
        let with_g = format!("g{}", &lower[1..]);
        assert_eq!(hv(Rule::Plain, &json!(with_g)), [sha256_hex(&with_g)]);
    }

    /// Runs a table of `label|key|json value|expected` lines, where expected is
    /// a comma-separated list of hashes (empty = nothing sent). Kept as text so
    /// each vector stays on one line next to its label.
    fn run_table(table: &str) -> usize {
        let mut count = 0;
        for line in table.lines().map(str::trim).filter(|l| !l.is_empty()) {
            let f: Vec<&str> = line.split('|').collect();
            assert_eq!(f.len(), 4, "malformed row: {line}");
            let key = rule_of(f[1]).unwrap_or_else(|| panic!("bad key: {line}"));
            let value: Value = serde_json::from_str(f[2]).unwrap_or_else(|e| panic!("{e}: {line}"));
            let want: Vec<&str> = f[3].split(',').filter(|s| !s.is_empty()).collect();
            assert_eq!(hv(key, &value), want, "{line}");
            count += 1;
        }
        count
    }

    /// Vectors from the test files of RudderStack's (`rudder-transformer`) and Segment's
    /// (`action-destinations`) public Pinterest Conversions API integrations, numbered by us.
    /// Skipped: #7 and #8 (RudderStack hashes `male` /
    /// `female` with no f/m/n mapping), #11 (Segment keeps dashes in a date of
    /// birth), #26 (RudderStack's sendingUnHashedData=false sends raw values
    /// unhashed): those follow other vendors' rules, not Pinterest's.
    #[test]
    fn capi_reference_3_6() {
        let rows = r#"
            #1|em|"abc@gmail.com"|48ddb93f0b30c475423fe177832912c5bcdce3cc72872f8051627967ef278e08
            #2|em|" abc@gmail.com"|48ddb93f0b30c475423fe177832912c5bcdce3cc72872f8051627967ef278e08
            #3|em|["abc@gmail.com","def@gmail.com"]|48ddb93f0b30c475423fe177832912c5bcdce3cc72872f8051627967ef278e08,c392e50ebeca7bea4405e9c545023451ac56620031f81263f681269bde14218b
            #4|ph|"+1234589947"|d164bbe036663cb5c96835e9ccc6501e9a521127ea62f6359744928ba932413b
            #5|ph|"+1234589947 "|d164bbe036663cb5c96835e9ccc6501e9a521127ea62f6359744928ba932413b
            #6|ge|"non-binary"|1b16b1df538ba12dc3f97edbb85caa7050d46c148134290feba80f8236c83db9
            #9|ge|"male"|62c66a7a5dd70c3146618063c344e531e6d4b59e379808443ce962b3abd63c5a
            #10|db|"19960314"|25f0dd07093aa653929e6e4d7710eeee84073ce654786612c09d1db67114c7ef
            #12|ln|"Rudderlabs"|dcf000c2386fb76d22cefc0d118a8511bb75999019cd373df52044bccd1bd251
            #13|fn|"Test"|9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08
            #13b|ln|"test"|9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08
            #14|fn|"Gaurav"|44104fcaef8476724152090d6d7bd9afa8ca5b385f6a99d3c6cf36b943b9872d
            #15|ct|"Kolkata"|6689106ca7922c30b2fd2c175c85bc7fc2d52cc4941bdd7bb622c6cdc6284a85
            #16|st|"WB"|3b45022ab36728cdae12e709e945bba267c50ee8a91e6e4388539a8e03a3fdcd
            #17|st|"CA"|6959097001d10501ac7d54c0bdb8db61420f658f2922cc26e46d536119a31126
            #18|zp|"700114"|1a4292e00780e18d00e76fde9850aee5344e939ba593333cd5e4b4aa2cd33b0c
            #19|zp|"123456"|8d969eef6ecad3c29a3a629280e686cf0c3f5d5a86aff3ca12020c923adc6c92
            #20|country|"IN"|582967534d0f909d196b97f9e6921342777aea87b46fa52df165389db1fb8ccf
            #21|country|"US"|79adb2a2fce5c6ba215fe5f27f532d4e7edbac4b6a5e09e1ef3a08084a904621
            #22|hashed_maids|"abc123"|6ca13d52ca70c883e0f0bb101e425a89e8624de51db2d2392593af6a84118090
            #23|external_id|"50be5c78-6c3f-4b60-be84-97805a316fb1"|3217d71a74c219d6e31e28267b313a7ceb6a2c032db1a091c9416b25b2ae2bc8
            #24|em|"test@gmail.com"|87924606b4131a8aceeeae8868531fbb9712aaa07a5d3a756b26ce0f5d6ca674
            #25|em|"c551027f06bd3f307ccd6abb61edc500def2680944c010e932ab5b27a3a8f151"|c551027f06bd3f307ccd6abb61edc500def2680944c010e932ab5b27a3a8f151
        "#;
        assert_eq!(run_table(rows), 23);
    }

    /// Inputs on which those integrations disagree, normalized the way Pinterest's Conversions
    /// API documentation describes (phone digits without leading zeros, city without spaces,
    /// gender as `f`/`m`/`n`) and Segment's help pages show (US ZIP as 5 digits, date of birth
    /// as `YYYYMMDD`).
    #[test]
    fn capi_reference_3_7() {
        let rows = r#"
            ph|ph|"0044 7700 900123"|033134b911b137918338415ee3d20a064b24773d36a3b02e8b99fdd3fcd6b4cd
            zp|zp|"94107-1234"|c884a209ebe08750a7d13db63bd02233b375bd79786cbe329ab11586cc35dead
            ct|ct|"Menlo Park"|0007a3d64c01e23d5075203c5977c14e4f7e01a3fc570686fcc50b5e1dd42685
            db|db|"1996-02-01"|46a7c6b9e0c25062a3405d5a63510115055ed93bd8fc4ed4fdd227f18d360171
            ge|ge|"Female"|252f10c83610ebca1a059c0bae8255eba2f95be4d1d7bcfa89d7248a82d9f111
            em|em|" Test@Example.COM "|973dfe463ec85785f5f95af5ba3906eedb2d931c24e69824a89ea65dba4e813b
        "#;
        assert_eq!(run_table(rows), 6);
    }

    /// Conformance vectors (value -> expected hash).
    #[test]
    fn conformance_vectors() {
        let rows = r#"
            c1|em|"Override@Example.com"|a6fabf007acdb56fe4da708940111f05281f610353625803e1c252ef0867a299
            c2|ph|"+44 20 7946 0958"|35e206e5dec4c89b9e8b71b8c32724a5bb518483ac5a20c6617d738375b3b823
            c3|ge|"m"|62c66a7a5dd70c3146618063c344e531e6d4b59e379808443ce962b3abd63c5a
            c4|ct|"  Rio de Janeiro "|f1b5cb813c226fd2583edf275f51bfff0a70c162c9ee81bda595e0e5da213e4f
            c5|zp|12345|5994471abb01112afcc18159f6cc74b4f511b99806da59b3caf5a9c173cacfc5
            c6|ph|"tel: +1 555 010 9999 ext"|91a02cd9e0fdea8309e2361e0c1d2eb133b283c1cc08d5562185d25a613783af
            c7|db|"1996/12/26"|70d1ffe461872f01adea43dd228695a5550630f5675c7570f57f4a744eca336f
            c8|db|"26.12.1996"|12093379afab33d8c5d5723e946ae61a6cc91a7a651b3646bf23cd48f0fded39
            c9|zp|"SW1A 1AA"|830e1d4b9838bab1f5c2acdb23e0b502ff13a9832c4632e8d67a1d43d3b7f614
            c10|em|["A@x.com", " b@Y.com "]|478abec7430569163161dfea8513b8ce89d05f559456a26e945c66e1fe55a29d,48232851fed9ddb94545c01e2d440a96399066d00e0f7810ecc954dec9991301
            c11|external_id|12345|5994471abb01112afcc18159f6cc74b4f511b99806da59b3caf5a9c173cacfc5
            c12|em|""|
            c13|em|"   "|
            c14|ge|"xyz"|
            c15|em|"C551027F06BD3F307CCD6ABB61EDC500DEF2680944C010E932AB5B27A3A8F151"|c551027f06bd3f307ccd6abb61edc500def2680944c010e932ab5b27a3a8f151
            c16|ct|"Sa\u0303o Paulo"|3eda1428ae1aece064071f8d40f08fe2bc59ffa66c171a163caf15122ec4d7f0
        "#;
        assert_eq!(run_table(rows), 16);
    }

    /// Combining marks stay with their letters: "नई दिल्ली" (New Delhi) keeps its virama
    /// (U+094D) and vowel signs, loses only the space.
    #[test]
    fn city_keeps_combining_marks_of_other_scripts() {
        assert_eq!(
            normalize(Rule::City, "नई दिल्ली").as_deref(),
            Some("नईदिल्ली")
        );
        assert!(normalize(Rule::City, "नई दिल्ली").is_some_and(|t| t.contains('\u{094D}')));
        assert_eq!(
            normalize(Rule::City, "São Paulo!").as_deref(),
            Some("sãopaulo")
        );
    }
}
