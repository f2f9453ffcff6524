//! When a server's own certificate is valid, read from its DER (`x509-cert`): what the
//! server warns about before its clients refuse it, and what the metrics export. rustls
//! does not check a server's own certificate's dates, so an expired one is served until
//! clients fail their handshakes.

use std::time::{Duration, SystemTime};

use rustls::pki_types::CertificateDer;
use x509_cert::Certificate;
use x509_cert::der::Decode;

/// The validity period of a certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Validity {
    /// The first moment it is valid (`notBefore`).
    pub not_before: SystemTime,
    /// The last moment it is valid (`notAfter`).
    pub not_after: SystemTime,
}

/// How a certificate's validity stands at a moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Standing {
    /// Valid, with more than a third of its life (and more than a week) left.
    Valid,
    /// Valid, but past two thirds of its life and with less than a week left: by then
    /// renewal tools (certbot, step, Vault agents) have renewed it.
    ExpiresSoon(Duration),
    /// Past its `notAfter`: clients that verify it refuse it.
    Expired,
    /// Before its `notBefore` (or the clock is wrong): clients that verify it refuse it.
    NotYetValid,
}

/// The longest warning ahead of the end.
const WARN_AHEAD: Duration = Duration::from_secs(7 * 24 * 3600);

impl Validity {
    /// The validity of the certificate `der`, or `None` when it does not parse as X.509.
    ///
    /// # Examples
    ///
    /// ```
    /// use socketkit::tls::Validity;
    /// let made = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()])?;
    /// let validity = Validity::of(made.cert.der()).expect("a certificate");
    /// assert!(validity.not_before < validity.not_after);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn of(der: &CertificateDer<'_>) -> Option<Validity> {
        let cert = Certificate::from_der(der.as_ref()).ok()?;
        Some(Validity::of_parsed(&cert))
    }

    /// The validity of a certificate already parsed.
    pub(crate) fn of_parsed(cert: &Certificate) -> Validity {
        let validity = cert.tbs_certificate().validity();
        Validity {
            not_before: SystemTime::UNIX_EPOCH + validity.not_before.to_unix_duration(),
            not_after: SystemTime::UNIX_EPOCH + validity.not_after.to_unix_duration(),
        }
    }

    /// How it stands at `now`.
    pub fn standing(&self, now: SystemTime) -> Standing {
        if now < self.not_before {
            return Standing::NotYetValid;
        }
        let Ok(left) = self.not_after.duration_since(now) else {
            return Standing::Expired;
        };
        let life = self
            .not_after
            .duration_since(self.not_before)
            .unwrap_or_default();
        if left < WARN_AHEAD.min(life / 3) {
            Standing::ExpiresSoon(left)
        } else {
            Standing::Valid
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: Duration = Duration::from_secs(24 * 3600);

    fn validity(from_days: u32, days: u32) -> Validity {
        let not_before = SystemTime::UNIX_EPOCH + DAY * from_days;
        Validity {
            not_before,
            not_after: not_before + DAY * days,
        }
    }

    #[test]
    fn a_certificate_stands_by_the_share_of_its_life_left() {
        let at = |day: u32| SystemTime::UNIX_EPOCH + DAY * day;
        // 90 days (Let's Encrypt): warned in its last week.
        let ninety = validity(100, 90);
        assert_eq!(ninety.standing(at(99)), Standing::NotYetValid);
        assert_eq!(ninety.standing(at(100)), Standing::Valid);
        assert_eq!(ninety.standing(at(182)), Standing::Valid);
        assert_eq!(ninety.standing(at(184)), Standing::ExpiresSoon(DAY * 6));
        assert_eq!(ninety.standing(at(191)), Standing::Expired);
        // 3 days (a short-lived certificate): warned in its last day, not all its life.
        let three = validity(100, 3);
        assert_eq!(three.standing(at(101)), Standing::Valid);
        assert_eq!(
            three.standing(at(102) + DAY / 2),
            Standing::ExpiresSoon(DAY / 2)
        );
    }
}
