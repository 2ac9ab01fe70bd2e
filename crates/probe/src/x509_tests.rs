use super::*;
use rcgen::{date_time_ymd, CertificateParams, DistinguishedName, DnType, KeyPair};

fn cert(dn: DistinguishedName, sans: &[&str], not_after: (i32, u8, u8)) -> Vec<u8> {
    let sans: Vec<String> = sans.iter().map(|s| s.to_string()).collect();
    let mut params = CertificateParams::new(sans).unwrap();
    params.distinguished_name = dn;
    params.not_before = date_time_ymd(2020, 1, 1);
    params.not_after = date_time_ymd(not_after.0, not_after.1, not_after.2);
    let key = KeyPair::generate().unwrap();
    params.self_signed(&key).unwrap().der().to_vec()
}

#[test]
fn reads_not_after_in_both_time_forms() {
    let utc = cert(DistinguishedName::new(), &[], (2031, 3, 4));
    assert_eq!(
        parse_cert(&utc).unwrap().not_after,
        days_from_civil(2031, 3, 4) * 86_400
    );
    let generalized = cert(DistinguishedName::new(), &[], (2055, 6, 7));
    assert_eq!(
        parse_cert(&generalized).unwrap().not_after,
        days_from_civil(2055, 6, 7) * 86_400
    );
}

#[test]
fn prints_names_as_go_does() {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, "probe, test");
    dn.push(DnType::OrganizationName, "Mesh Org");
    dn.push(DnType::CountryName, "DE");
    dn.push(
        DnType::CustomDnType(vec![1, 2, 840, 113549, 1, 9, 1]),
        "a@b",
    );
    let der = cert(dn, &["localhost", "127.0.0.1", "x.example"], (2030, 1, 1));
    let info = parse_cert(&der).unwrap();
    // Go: ToRDNSequence is C, O, CN after the unnamed attribute, printed in reverse.
    assert_eq!(
        info.subject,
        "CN=probe\\, test,O=Mesh Org,C=DE,1.2.840.113549.1.9.1=#0c03614062"
    );
    assert_eq!(info.subject, info.issuer);
    assert_eq!(info.subject_der, info.issuer_der);
    // The IP address is an iPAddress SAN, not a DNS name.
    assert_eq!(info.dns_names, vec!["localhost", "x.example"]);
}

#[test]
fn escapes_like_rfc2253() {
    assert_eq!(escape(" a#b "), "\\ a#b\\ ");
    assert_eq!(escape("#x;y"), "\\#x\\;y");
    assert_eq!(escape("a<b>\"c\\"), "a\\<b\\>\\\"c\\\\");
}

#[test]
fn oids_print_dotted() {
    assert_eq!(
        oid_string(&[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d]),
        "1.2.840.113549"
    );
    assert_eq!(oid_string(&[0x55, 0x04, 0x03]), "2.5.4.3");
}

#[test]
fn times_with_offsets_and_fractions() {
    let t = |tag, s: &str| {
        parse_time(&Tlv {
            tag,
            content: s.as_bytes(),
            whole: &[],
        })
    };
    let base = days_from_civil(2024, 2, 29) * 86_400 + 12 * 3600;
    assert_eq!(t(UTC_TIME, "240229120000Z"), Ok(base));
    assert_eq!(t(UTC_TIME, "2402291200Z"), Ok(base));
    assert_eq!(t(UTC_TIME, "240229130000+0100"), Ok(base));
    assert_eq!(t(GENERALIZED_TIME, "20240229120000.123Z"), Ok(base));
    assert_eq!(
        t(UTC_TIME, "990101000000Z"),
        Ok(days_from_civil(1999, 1, 1) * 86_400)
    );
    for bad in [
        "",
        "2402291200",
        "24022912000Z",
        "241329120000Z",
        "24022912000aZ",
    ] {
        assert!(t(UTC_TIME, bad).is_err(), "{bad}");
    }
}

/// Every truncation and every single-byte corruption of a real certificate is an error or
/// a value, never a panic.
#[test]
fn malformed_input_never_panics() {
    let der = cert(DistinguishedName::new(), &["localhost"], (2030, 1, 1));
    for n in 0..der.len() {
        let _ = parse_cert(&der[..n]);
    }
    for i in 0..der.len() {
        for flip in [0x01u8, 0x80, 0xff] {
            let mut bad = der.clone();
            bad[i] ^= flip;
            let _ = parse_cert(&bad);
        }
    }
    assert!(parse_cert(&[]).is_err());
    assert!(parse_cert(&[0x30, 0x84, 0xff, 0xff, 0xff, 0xff]).is_err());
}
