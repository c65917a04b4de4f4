//! Just enough of Kubernetes resource quantities for the downward API: exact parsing into a fraction and
//! the rounding-up `Value()` / `MilliValue()` that upstream uses.

use thiserror::Error;

/// A quantity string that is not a valid Kubernetes quantity.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$': {0:?}")]
pub struct InvalidQuantity(pub String);

/// A non-negative quantity held exactly as `numerator / denominator`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Amount {
    numerator: u128,
    denominator: u128,
}

impl Amount {
    /// Parses `500m`, `1.5`, `64Mi`, `1e3`, `2G` and friends. Negative values are clamped to zero,
    /// since no resource the downward API reports can be negative.
    pub fn parse(text: &str) -> Result<Self, InvalidQuantity> {
        let bad = || InvalidQuantity(text.to_string());
        let (negative, body) = match text.as_bytes().first() {
            Some(b'-') => (true, &text[1..]),
            Some(b'+') => (false, &text[1..]),
            _ => (false, text),
        };
        let number_end = body.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(body.len());
        let (number, suffix) = body.split_at(number_end);
        if number.is_empty() || number == "." || number.matches('.').count() > 1 {
            return Err(bad());
        }
        let mut numerator: u128 = 0;
        let mut denominator: u128 = 1;
        let mut after_point = false;
        for c in number.chars() {
            if c == '.' {
                after_point = true;
                continue;
            }
            let digit = u128::from(c.to_digit(10).ok_or_else(bad)?);
            numerator = numerator.checked_mul(10).and_then(|n| n.checked_add(digit)).ok_or_else(bad)?;
            if after_point {
                denominator = denominator.checked_mul(10).ok_or_else(bad)?;
            }
        }
        let (multiplier, divider) = suffix_scale(suffix).ok_or_else(bad)?;
        numerator = numerator.checked_mul(multiplier).ok_or_else(bad)?;
        denominator = denominator.checked_mul(divider).ok_or_else(bad)?;
        if negative {
            numerator = 0;
        }
        Ok(Amount { numerator, denominator })
    }

    /// Whether this is exactly zero.
    pub fn is_zero(&self) -> bool {
        self.numerator == 0
    }

    /// The value in units of 10^-3, rounded up (upstream `MilliValue`).
    pub fn milli_value(&self) -> u128 {
        ceil_div(self.numerator.saturating_mul(1000), self.denominator)
    }

    /// The value rounded up to a whole unit (upstream `Value`).
    pub fn value(&self) -> u128 {
        ceil_div(self.numerator, self.denominator)
    }
}

/// `a / b` rounded up; zero when `b` is zero.
pub(crate) fn ceil_div(a: u128, b: u128) -> u128 {
    if b == 0 {
        return 0;
    }
    a / b + u128::from(!a.is_multiple_of(b))
}

/// `(multiplier, divider)` for a suffix: binary SI, decimal SI, or a decimal exponent.
fn suffix_scale(suffix: &str) -> Option<(u128, u128)> {
    let pow = |base: u128, exp: u32| base.checked_pow(exp);
    Some(match suffix {
        "" => (1, 1),
        "n" => (1, pow(10, 9)?),
        "u" => (1, pow(10, 6)?),
        "m" => (1, 1000),
        "k" => (1000, 1),
        "M" => (pow(10, 6)?, 1),
        "G" => (pow(10, 9)?, 1),
        "T" => (pow(10, 12)?, 1),
        "P" => (pow(10, 15)?, 1),
        "E" => (pow(10, 18)?, 1),
        "Ki" => (1 << 10, 1),
        "Mi" => (1 << 20, 1),
        "Gi" => (1 << 30, 1),
        "Ti" => (1 << 40, 1),
        "Pi" => (1 << 50, 1),
        "Ei" => (1 << 60, 1),
        _ => {
            let exponent = suffix.strip_prefix(['e', 'E'])?;
            let value: i32 = exponent.parse().ok()?;
            // Large exponents overflow any resource worth reporting; refuse rather than saturate.
            if value >= 0 {
                (pow(10, u32::try_from(value).ok()?)?, 1)
            } else {
                (1, pow(10, value.unsigned_abs())?)
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn amount(s: &str) -> Amount {
        Amount::parse(s).unwrap()
    }

    #[test]
    fn values_round_up_like_upstream() {
        assert_eq!(amount("500m").milli_value(), 500);
        assert_eq!(amount("500m").value(), 1);
        assert_eq!(amount("1.5").milli_value(), 1500);
        assert_eq!(amount("2").milli_value(), 2000);
        assert_eq!(amount("1n").milli_value(), 1);
        assert_eq!(amount("64Mi").value(), 64 * 1024 * 1024);
        assert_eq!(amount("1G").value(), 1_000_000_000);
        assert_eq!(amount("1e3").value(), 1000);
        assert_eq!(amount("1E").value(), 1_000_000_000_000_000_000);
        assert_eq!(amount("12e-1").value(), 2);
        assert_eq!(amount("0.1").milli_value(), 100);
        assert!(amount("0").is_zero());
    }

    #[test]
    fn rejects_garbage() {
        for bad in ["", "abc", "1.2.3", "5Zi", "m", "1e", "."] {
            assert!(Amount::parse(bad).is_err(), "{bad:?} should be rejected");
        }
    }
}
