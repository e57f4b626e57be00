//! Validation shared by every kind: names, labels, annotations, object metadata. The messages
//! are upstream's, because kubectl shows them to users as they are.

use serde_json::Value;

/// Most field errors worth collecting for one object: past this, validation of long lists
/// (containers) stops early, so an object of 300k empty containers costs thousands of errors,
/// not a million (the Status lists only the first hundred anyway).
pub const MAX_ERRORS: usize = 1_000;

/// One field error: (field path, reason, message). `reason` is the `details.causes[].reason`.
#[derive(Clone, Debug, PartialEq)]
pub struct FieldError {
    pub field: String,
    pub reason: &'static str,
    pub message: String,
}

impl FieldError {
    pub fn invalid(field: impl Into<String>, value: &str, detail: impl AsRef<str>) -> FieldError {
        FieldError {
            field: field.into(),
            reason: "FieldValueInvalid",
            message: format!("Invalid value: {}: {}", Value::from(value), detail.as_ref()),
        }
    }

    pub fn required(field: impl Into<String>, detail: &str) -> FieldError {
        FieldError {
            field: field.into(),
            reason: "FieldValueRequired",
            message: if detail.is_empty() {
                "Required value".into()
            } else {
                format!("Required value: {detail}")
            },
        }
    }

    pub fn forbidden(field: impl Into<String>, detail: &str) -> FieldError {
        FieldError {
            field: field.into(),
            reason: "FieldValueForbidden",
            message: format!("Forbidden: {detail}"),
        }
    }

    pub fn too_long(field: impl Into<String>, max: usize) -> FieldError {
        FieldError {
            field: field.into(),
            reason: "FieldValueTooLong",
            message: format!("Too long: may not be more than {max} bytes"),
        }
    }
}

const DNS1123_LABEL_MSG: &str = "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')";
const DNS1123_SUBDOMAIN_MSG: &str = "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')";
const DNS1035_LABEL_MSG: &str = "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character (e.g. 'my-name',  or 'abc-123', regex used for validation is '[a-z]([-a-z0-9]*[a-z0-9])?')";
const QUALIFIED_NAME_MSG: &str = "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')";
const LABEL_VALUE_MSG: &str = "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')";

fn is_lower_alnum(c: u8) -> bool {
    c.is_ascii_lowercase() || c.is_ascii_digit()
}

fn is_label_body(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && is_lower_alnum(b[0])
        && is_lower_alnum(b[b.len() - 1])
        && b.iter().all(|&c| is_lower_alnum(c) || c == b'-')
}

/// The messages for a DNS-1123 label (≤ 63), empty when valid.
pub fn dns1123_label(s: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if s.len() > 63 {
        errs.push("must be no more than 63 characters".to_string());
    }
    if !is_label_body(s) {
        errs.push(DNS1123_LABEL_MSG.to_string());
    }
    errs
}

/// The messages for a DNS-1123 subdomain (≤ 253), empty when valid.
pub fn dns1123_subdomain(s: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if s.len() > 253 {
        errs.push("must be no more than 253 characters".to_string());
    }
    if s.is_empty() || !s.split('.').all(is_label_body) {
        errs.push(DNS1123_SUBDOMAIN_MSG.to_string());
    }
    errs
}

/// The messages for a DNS-1035 label (services: must start with a letter), empty when valid.
pub fn dns1035_label(s: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if s.len() > 63 {
        errs.push("must be no more than 63 characters".to_string());
    }
    if !is_label_body(s) || !s.as_bytes()[0].is_ascii_lowercase() {
        errs.push(DNS1035_LABEL_MSG.to_string());
    }
    errs
}

/// Path segment names (`.`/`..` and `/`, `%` are not allowed in any name).
fn path_segment_name(s: &str) -> Vec<String> {
    if s == "." || s == ".." {
        return vec![format!("may not be '{s}'")];
    }
    ["/", "%"]
        .iter()
        .filter(|bad| s.contains(*bad))
        .map(|bad| format!("may not contain '{bad}'"))
        .collect()
}

/// How a kind's names are checked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NameRule {
    /// Most kinds.
    Subdomain,
    /// Namespaces and a few others.
    Label,
    /// Services.
    Dns1035,
    /// Only what a URL path segment allows (RBAC roles, for example).
    PathSegment,
}

impl NameRule {
    pub fn check(self, name: &str) -> Vec<String> {
        match self {
            NameRule::Subdomain => dns1123_subdomain(name),
            NameRule::Label => dns1123_label(name),
            NameRule::Dns1035 => dns1035_label(name),
            NameRule::PathSegment => path_segment_name(name),
        }
    }
}

fn is_qualified_name_part(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
        && b.iter()
            .all(|&c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_' || c == b'.')
}

/// A label or annotation key: `[prefix/]name`, the prefix a DNS subdomain.
pub fn qualified_name(key: &str) -> Vec<String> {
    let (prefix, name) = match key.split_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, key),
    };
    let mut errs = Vec::new();
    if let Some(p) = prefix {
        if p.is_empty() {
            errs.push("prefix part must be non-empty".to_string());
        } else {
            errs.extend(
                dns1123_subdomain(p)
                    .into_iter()
                    .map(|m| format!("prefix part {m}")),
            );
        }
    }
    if name.is_empty() {
        errs.push("name part must be non-empty".to_string());
    } else if name.len() > 63 {
        errs.push("name part must be no more than 63 characters".to_string());
    } else if !is_qualified_name_part(name) || name.contains('/') {
        errs.push(QUALIFIED_NAME_MSG.to_string());
    }
    errs
}

pub fn label_value(v: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if v.len() > 63 {
        errs.push("must be no more than 63 characters".to_string());
    }
    if !v.is_empty() && !is_qualified_name_part(&v[..v.len().min(63)]) {
        errs.push(LABEL_VALUE_MSG.to_string());
    }
    errs
}

/// Labels: keys are qualified names, values label values.
pub fn labels(labels: &Value, field: &str, errs: &mut Vec<FieldError>) {
    let Some(map) = labels.as_object() else {
        return;
    };
    for (k, v) in map {
        for m in qualified_name(k) {
            errs.push(FieldError::invalid(field, k, m));
        }
        match v.as_str() {
            Some(s) => {
                for m in label_value(s) {
                    errs.push(FieldError::invalid(format!("{field}[{k}]"), s, m));
                }
            }
            None => errs.push(FieldError::invalid(
                format!("{field}[{k}]"),
                &v.to_string(),
                "must be a string",
            )),
        }
    }
}

/// Annotations: qualified-name keys and at most 256 KiB in total.
pub fn annotations(annotations: &Value, field: &str, errs: &mut Vec<FieldError>) {
    let Some(map) = annotations.as_object() else {
        return;
    };
    let mut total = 0;
    for (k, v) in map {
        for m in qualified_name(&k.to_lowercase()) {
            errs.push(FieldError::invalid(field, k, m));
        }
        total += k.len() + v.as_str().map_or(0, str::len);
    }
    if total > 256 * 1024 {
        errs.push(FieldError::too_long(field, 256 * 1024));
    }
}

/// `metadata` of a new or updated object: name (by `rule`), labels, annotations.
pub fn object_meta(meta: &Value, rule: NameRule, errs: &mut Vec<FieldError>) {
    let name = meta.get("name").and_then(Value::as_str).unwrap_or("");
    let generate = meta.get("generateName").and_then(Value::as_str);
    if name.is_empty() {
        if generate.is_none() {
            errs.push(FieldError::required(
                "metadata.name",
                "name or generateName is required",
            ));
        }
    } else {
        for m in rule.check(name) {
            errs.push(FieldError::invalid("metadata.name", name, m));
        }
    }
    if let Some(l) = meta.get("labels") {
        labels(l, "metadata.labels", errs);
    }
    if let Some(a) = meta.get("annotations") {
        annotations(a, "metadata.annotations", errs);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn names() {
        assert!(dns1123_subdomain("my-app.example").is_empty());
        assert!(!dns1123_subdomain("My-App").is_empty());
        assert!(!dns1123_subdomain("-a").is_empty());
        assert!(!dns1123_subdomain(&"a".repeat(254)).is_empty());
        assert!(dns1123_label("ns-1").is_empty());
        assert!(!dns1123_label("a.b").is_empty());
        assert!(!dns1035_label("1abc").is_empty());
        assert!(dns1035_label("abc-1").is_empty());
        assert_eq!(NameRule::PathSegment.check("a:b"), Vec::<String>::new());
        assert!(!NameRule::PathSegment.check("a/b").is_empty());
    }

    #[test]
    fn label_rules() {
        assert!(qualified_name("app.kubernetes.io/name").is_empty());
        assert!(qualified_name("app").is_empty());
        assert!(!qualified_name("/app").is_empty());
        assert!(!qualified_name("a/b/c").is_empty());
        assert!(!qualified_name("-app").is_empty());
        assert!(label_value("").is_empty());
        assert!(label_value("v1.2_3").is_empty());
        assert!(!label_value("bad value").is_empty());
        let mut errs = Vec::new();
        labels(
            &json!({"ok": "yes", "bad key": "x"}),
            "metadata.labels",
            &mut errs,
        );
        assert_eq!(errs.len(), 1);
        assert_eq!(errs[0].field, "metadata.labels");
    }

    #[test]
    fn meta_requires_a_name() {
        let mut errs = Vec::new();
        object_meta(&json!({}), NameRule::Subdomain, &mut errs);
        assert_eq!(errs[0].reason, "FieldValueRequired");
        let mut errs = Vec::new();
        object_meta(&json!({"name": "Bad_Name"}), NameRule::Subdomain, &mut errs);
        assert_eq!(errs[0].field, "metadata.name");
        assert!(errs[0]
            .message
            .starts_with("Invalid value: \"Bad_Name\": a lowercase RFC 1123 subdomain"));
    }
}

// ---------------------------------------------------------------------------------------------
// Resource quantities (used by the strategies): upstream's `resource.Quantity` — parsing,
// comparison, and the canonical form the API server prints back (`0.5` → `500m`,
// `1024Mi` → `1Gi`, `1000m` → `1`).
// ---------------------------------------------------------------------------------------------

/// What upstream's decoder answers for a string that is not a quantity.
pub const QUANTITY_FORMAT_MSG: &str =
    "quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'";

/// How a quantity was written, which decides how it is printed back.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum QuantityFormat {
    /// `m`, `k`, `M`, … or no suffix.
    DecimalSI,
    /// `Ki`, `Mi`, `Gi`, …
    BinarySI,
    /// `e3`, `E-2`, …
    DecimalExponent,
}

/// A resource quantity, held exactly in nano-units (upstream rounds anything finer up to
/// 1n).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Quantity {
    nanos: i128,
    format: QuantityFormat,
}

const NANOS_PER_UNIT: i128 = 1_000_000_000;

fn pow10(e: u32) -> Option<i128> {
    10i128.checked_pow(e)
}

/// `n / d` rounded away from zero.
fn div_away(n: i128, d: i128) -> i128 {
    let q = n / d;
    if n % d == 0 {
        q
    } else {
        q + n.signum()
    }
}

impl Quantity {
    /// Parses `<sign><digits>[.<digits>]<suffix>` as upstream does; `None` when malformed or
    /// beyond what the server can hold.
    pub fn parse(s: &str) -> Option<Quantity> {
        let b = s.as_bytes();
        let mut i = 0;
        let negative = match b.first()? {
            b'-' => {
                i = 1;
                true
            }
            b'+' => {
                i = 1;
                false
            }
            _ => false,
        };
        let int_start = i;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        let int_part = &s[int_start..i];
        let mut frac_part = "";
        if i < b.len() && b[i] == b'.' {
            i += 1;
            let f = i;
            while i < b.len() && b[i].is_ascii_digit() {
                i += 1;
            }
            frac_part = &s[f..i];
        }
        if int_part.is_empty() && frac_part.is_empty() {
            return None;
        }
        let (base2, exp, format) = match &s[i..] {
            "" => (false, 0i32, QuantityFormat::DecimalSI),
            "n" => (false, -9, QuantityFormat::DecimalSI),
            "u" => (false, -6, QuantityFormat::DecimalSI),
            "m" => (false, -3, QuantityFormat::DecimalSI),
            "k" => (false, 3, QuantityFormat::DecimalSI),
            "M" => (false, 6, QuantityFormat::DecimalSI),
            "G" => (false, 9, QuantityFormat::DecimalSI),
            "T" => (false, 12, QuantityFormat::DecimalSI),
            "P" => (false, 15, QuantityFormat::DecimalSI),
            "E" => (false, 18, QuantityFormat::DecimalSI),
            "Ki" => (true, 10, QuantityFormat::BinarySI),
            "Mi" => (true, 20, QuantityFormat::BinarySI),
            "Gi" => (true, 30, QuantityFormat::BinarySI),
            "Ti" => (true, 40, QuantityFormat::BinarySI),
            "Pi" => (true, 50, QuantityFormat::BinarySI),
            "Ei" => (true, 60, QuantityFormat::BinarySI),
            suffix if suffix.starts_with(['e', 'E']) => {
                let rest = &suffix[1..];
                let digits = rest.strip_prefix(['+', '-']).unwrap_or(rest);
                if digits.is_empty() || !digits.bytes().all(|c| c.is_ascii_digit()) {
                    return None;
                }
                let e: i32 = rest.parse().ok()?;
                (false, e, QuantityFormat::DecimalExponent)
            }
            _ => return None,
        };
        let digits = format!("{int_part}{frac_part}");
        let digits = digits.trim_start_matches('0');
        if digits.len() > 30 {
            return None;
        }
        let mantissa: i128 = if digits.is_empty() {
            0
        } else {
            digits.parse().ok()?
        };
        // value = mantissa * 10^(scale) * multiplier
        let scale = 9 - frac_part.len() as i32;
        let nanos = if base2 {
            let m = mantissa.checked_mul(1i128.checked_shl(exp as u32)?)?;
            if scale >= 0 {
                m.checked_mul(pow10(scale as u32)?)?
            } else {
                div_away(m, pow10((-scale) as u32)?)
            }
        } else {
            let e = scale.checked_add(exp)?;
            if e >= 0 {
                mantissa.checked_mul(pow10(u32::try_from(e).ok()?)?)?
            } else if e < -38 {
                i128::from(mantissa != 0)
            } else {
                div_away(mantissa, pow10((-e) as u32)?)
            }
        };
        if nanos > 10i128.pow(37) {
            return None;
        }
        let nanos = if negative { -nanos } else { nanos };
        let format = if format == QuantityFormat::BinarySI && nanos > 0 && nanos < NANOS_PER_UNIT {
            QuantityFormat::DecimalSI
        } else {
            format
        };
        Some(Quantity { nanos, format })
    }

    /// A quantity given in JSON: a string, or a bare number (which upstream also accepts).
    pub fn from_json(v: &Value) -> Option<Quantity> {
        match v {
            Value::String(s) => Quantity::parse(s),
            Value::Number(n) => Quantity::parse(&n.to_string()),
            _ => None,
        }
    }

    /// A whole number of units, printed in decimal SI.
    pub fn from_units(units: i64) -> Quantity {
        Quantity {
            nanos: i128::from(units) * NANOS_PER_UNIT,
            format: QuantityFormat::DecimalSI,
        }
    }

    pub fn format(&self) -> QuantityFormat {
        self.format
    }

    /// Another value in this quantity's format (sums and differences of resource lists keep
    /// the format of their first operand, as upstream's `Quantity.Add`).
    pub fn with_nanos(&self, nanos: i128) -> Quantity {
        Quantity {
            nanos,
            format: self.format,
        }
    }

    /// The exact value in units of 10⁻⁹.
    pub fn nanos(&self) -> i128 {
        self.nanos
    }

    /// The value in milli-units, rounded up (away from zero).
    pub fn milli(&self) -> i128 {
        div_away(self.nanos, 1_000_000)
    }

    pub fn is_zero(&self) -> bool {
        self.nanos == 0
    }

    pub fn is_negative(&self) -> bool {
        self.nanos < 0
    }

    /// True when the value is a whole number of units.
    pub fn is_integer(&self) -> bool {
        self.nanos % NANOS_PER_UNIT == 0
    }

    /// Rounds up (away from zero) to a whole number of milli-units, as upstream does for
    /// resource lists.
    pub fn round_up_to_milli(&mut self) {
        self.nanos = div_away(self.nanos, 1_000_000) * 1_000_000;
    }

    pub fn add(&self, other: &Quantity) -> Quantity {
        Quantity {
            nanos: self.nanos.saturating_add(other.nanos),
            format: self.format,
        }
    }

    /// Upstream's canonical spelling (`Quantity.String()`).
    pub fn canonical(&self) -> String {
        if self.nanos == 0 {
            return "0".to_string();
        }
        let sign = if self.nanos < 0 { "-" } else { "" };
        let abs = self.nanos.unsigned_abs();
        let mut format = self.format;
        if format == QuantityFormat::BinarySI
            && (abs < 1024 * NANOS_PER_UNIT as u128 || !abs.is_multiple_of(NANOS_PER_UNIT as u128))
        {
            format = QuantityFormat::DecimalSI;
        }
        if format == QuantityFormat::BinarySI {
            let mut units = abs / NANOS_PER_UNIT as u128;
            let mut exp = 0;
            while exp < 6 && units.is_multiple_of(1024) {
                units /= 1024;
                exp += 1;
            }
            let suffix = ["", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei"][exp];
            return format!("{sign}{units}{suffix}");
        }
        let mut mantissa = abs;
        let mut exp: i32 = -9;
        while mantissa.is_multiple_of(10) {
            mantissa /= 10;
            exp += 1;
        }
        match exp.rem_euclid(3) {
            1 => {
                mantissa *= 10;
                exp -= 1;
            }
            2 => {
                mantissa *= 100;
                exp -= 2;
            }
            _ => {}
        }
        if format == QuantityFormat::DecimalExponent {
            return if exp == 0 {
                format!("{sign}{mantissa}")
            } else {
                format!("{sign}{mantissa}e{exp}")
            };
        }
        while exp > 18 {
            mantissa *= 1000;
            exp -= 3;
        }
        let suffix = match exp {
            -9 => "n",
            -6 => "u",
            -3 => "m",
            3 => "k",
            6 => "M",
            9 => "G",
            12 => "T",
            15 => "P",
            18 => "E",
            _ => "",
        };
        format!("{sign}{mantissa}{suffix}")
    }
}

impl PartialOrd for Quantity {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.nanos.cmp(&other.nanos))
    }
}

/// A quantity in milli-units, rounded up; `None` when `s` is not a quantity.
pub fn parse_quantity(s: &str) -> Option<i128> {
    Quantity::parse(s).map(|q| q.milli())
}

#[cfg(test)]
mod quantity_tests {
    use super::*;

    fn canon(s: &str) -> String {
        Quantity::parse(s)
            .map(|q| q.canonical())
            .unwrap_or_default()
    }

    #[test]
    fn canonical_forms() {
        assert_eq!(canon("0.5"), "500m");
        assert_eq!(canon("1000m"), "1");
        assert_eq!(canon("1.5"), "1500m");
        assert_eq!(canon("2000"), "2k");
        assert_eq!(canon("1024Mi"), "1Gi");
        assert_eq!(canon("1536Mi"), "1536Mi");
        assert_eq!(canon("0.5Gi"), "512Mi");
        assert_eq!(canon("100Ki"), "100Ki");
        assert_eq!(canon("1e3"), "1e3");
        assert_eq!(canon("1.5e3"), "1500");
        assert_eq!(canon("128974848"), "128974848");
        assert_eq!(canon("129e6"), "129e6");
        assert_eq!(canon("123Mi"), "123Mi");
        assert_eq!(canon("0"), "0");
        assert_eq!(canon("-1"), "-1");
        assert_eq!(canon("512"), "512");
        assert_eq!(canon(".5"), "500m");
        assert_eq!(canon("1n"), "1n");
    }

    #[test]
    fn rejects_garbage() {
        for s in ["", "abc", "1.2.3", "1Qi", "--1", "1e", "."] {
            assert!(Quantity::parse(s).is_none(), "{s}");
        }
    }

    #[test]
    fn milli_values() {
        assert_eq!(parse_quantity("100m"), Some(100));
        assert_eq!(parse_quantity("1"), Some(1000));
        assert_eq!(parse_quantity("0.0001"), Some(1));
        assert_eq!(parse_quantity("1Ki"), Some(1_024_000));
        let mut q = Quantity::parse("0.0001").unwrap();
        q.round_up_to_milli();
        assert_eq!(q.canonical(), "1m");
    }
}
