use super::*;

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

fn complete(client: Option<&str>, consumed: usize) -> Parsed {
    Parsed::Complete {
        client: client.map(addr),
        consumed,
    }
}

/// Every strict prefix of a valid header asks for more bytes.
fn assert_prefixes_need_more(header: &[u8]) {
    for n in 0..header.len() {
        assert_eq!(parse(&header[..n]), Parsed::NeedMore, "prefix of {n} bytes");
    }
}

#[test]
fn v1_examples_of_the_spec() {
    let line = b"PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\nGET / HTTP/1.1\r\n";
    assert_eq!(parse(line), complete(Some("192.168.0.1:56324"), 47));
    // The worst cases of spec §2.1: 56 bytes (TCP4), 104 (TCP6), 107 (UNKNOWN with addresses).
    let tcp4 = b"PROXY TCP4 255.255.255.255 255.255.255.255 65535 65535\r\n";
    assert_eq!(parse(tcp4), complete(Some("255.255.255.255:65535"), 56));
    let ff = "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff";
    let tcp6 = format!("PROXY TCP6 {ff} {ff} 65535 65535\r\n");
    assert_eq!(tcp6.len(), 104);
    assert_eq!(
        parse(tcp6.as_bytes()),
        complete(Some(&format!("[{ff}]:65535")), 104)
    );
    let unknown = format!("PROXY UNKNOWN {ff} {ff} 65535 65535\r\n");
    assert_eq!(unknown.len(), 107);
    assert_eq!(parse(unknown.as_bytes()), complete(None, 107));
    assert_eq!(parse(b"PROXY UNKNOWN\r\n"), complete(None, 15));
    assert_prefixes_need_more(tcp4);
    assert_prefixes_need_more(unknown.as_bytes());
}

#[test]
fn v1_refusals() {
    for bad in [
        &b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2 3\r\n"[..], // an extra field
        b"PROXY TCP4 1.2.3.4 5.6.7.8 01 2\r\n",       // a leading zero
        b"PROXY TCP4 1.2.3.4 5.6.7.8 70000 2\r\n",    // a port past 65535
        b"PROXY TCP4 ::1 ::1 1 2\r\n",                // IPv6 under TCP4
        b"PROXY TCP6 1.2.3.4 5.6.7.8 1 2\r\n",        // IPv4 under TCP6
        b"PROXY TCP4  1.2.3.4 5.6.7.8 1 2\r\n",       // two spaces
        b"PROXY UDP4 1.2.3.4 5.6.7.8 1 2\r\n",        // not a protocol of v1
        b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n",          // LF without CR
        b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\rX",         // CR without LF
    ] {
        assert!(
            matches!(parse(bad), Parsed::Invalid(_)),
            "{:?}",
            String::from_utf8_lossy(bad)
        );
    }
    let long = format!("PROXY UNKNOWN {}\r\n", "x".repeat(100));
    assert_eq!(
        parse(long.as_bytes()),
        Parsed::Invalid(Invalid::V1LineTooLong)
    );
    let endless = format!("PROXY UNKNOWN {}", "x".repeat(200));
    assert_eq!(
        parse(endless.as_bytes()),
        Parsed::Invalid(Invalid::V1LineTooLong)
    );
    // A bare newline before the CRLF is malformed, whatever follows (found by the fuzzer: after UNKNOWN,
    // whose rest of line is ignored, it used to be refused alone and accepted once a CRLF followed).
    assert_eq!(
        parse(b"PROXY UNKNOWN \n"),
        Parsed::Invalid(Invalid::V1Malformed)
    );
    assert_eq!(
        parse(b"PROXY UNKNOWN \n\r\n\r\n"),
        Parsed::Invalid(Invalid::V1Malformed)
    );
}

#[test]
fn anything_else_is_refused_at_once() {
    for bad in [
        &b"GET / HTTP/1.1\r\n"[..],
        b"\x16\x03\x01\x02\x00", // a TLS ClientHello
        b"PROXX",
        b"\r\n\r\n\0\r\nQUIX",
    ] {
        assert_eq!(parse(bad), Parsed::Invalid(Invalid::NoSignature), "{bad:?}");
    }
    assert_eq!(parse(b"P"), Parsed::NeedMore);
    assert_eq!(parse(b""), Parsed::NeedMore);
}

/// The example of spec §2.2 as HAProxy sends it: TCP over IPv4, with TLVs (skipped).
#[test]
fn v2_ipv4_with_tlvs() {
    let mut header = Vec::new();
    // PP2_TYPE_ALPN "h2", then PP2_TYPE_NOOP of 3 bytes.
    let tlvs = [0x01, 0x00, 0x02, b'h', b'2', 0x04, 0x00, 0x03, 0, 0, 0];
    encode_v2(
        addr("10.1.2.3:40000"),
        addr("10.0.0.1:443"),
        &tlvs,
        &mut header,
    );
    assert_eq!(header.len(), 16 + 12 + tlvs.len());
    assert_eq!(&header[12..16], &[0x21, 0x11, 0x00, 23]);
    let consumed = header.len();
    header.extend_from_slice(b"\x16\x03\x01 ClientHello follows");
    assert_eq!(parse(&header), complete(Some("10.1.2.3:40000"), consumed));
    assert_prefixes_need_more(&header[..consumed]);
}

#[test]
fn v2_ipv6() {
    let mut header = Vec::new();
    encode_v2(
        addr("[2001:db8::7]:5555"),
        addr("[2001:db8::1]:80"),
        &[],
        &mut header,
    );
    assert_eq!(header.len(), 16 + 36);
    assert_eq!(parse(&header), complete(Some("[2001:db8::7]:5555"), 52));
    assert_prefixes_need_more(&header);
}

#[test]
fn v2_local_and_unspec_name_no_client() {
    // LOCAL (a health check from the proxy itself), family UNSPEC, no address block.
    let mut local = V2_SIGNATURE.to_vec();
    local.extend_from_slice(&[0x20, 0x00, 0x00, 0x00]);
    assert_eq!(parse(&local), complete(None, 16));
    // LOCAL with an address block: the block is skipped, not read.
    let mut local = V2_SIGNATURE.to_vec();
    local.extend_from_slice(&[0x20, 0x11, 0x00, 0x0C]);
    local.extend_from_slice(&[1; 12]);
    assert_eq!(parse(&local), complete(None, 28));
    // PROXY over a UNIX socket (family 0x31): valid, no IP address.
    let mut unix = V2_SIGNATURE.to_vec();
    unix.extend_from_slice(&[0x21, 0x31, 0x00, 0xD8]);
    unix.extend_from_slice(&[0; 216]);
    assert_eq!(parse(&unix), complete(None, 232));
}

#[test]
fn v2_refusals() {
    let mut bad_version = V2_SIGNATURE.to_vec();
    bad_version.push(0x11);
    assert_eq!(parse(&bad_version), Parsed::Invalid(Invalid::V2BadVersion));
    let mut bad_command = V2_SIGNATURE.to_vec();
    bad_command.extend_from_slice(&[0x22, 0x11, 0, 12]);
    assert_eq!(parse(&bad_command), Parsed::Invalid(Invalid::V2BadVersion));
    // An IPv4 block of 8 bytes (ports missing).
    let mut short = V2_SIGNATURE.to_vec();
    short.extend_from_slice(&[0x21, 0x11, 0, 8]);
    short.extend_from_slice(&[127, 0, 0, 1, 127, 0, 0, 1]);
    assert_eq!(parse(&short), Parsed::Invalid(Invalid::V2ShortAddress));
    // An IPv6 family with an IPv4-sized block.
    let mut short6 = V2_SIGNATURE.to_vec();
    short6.extend_from_slice(&[0x21, 0x21, 0, 12]);
    short6.extend_from_slice(&[0; 12]);
    assert_eq!(parse(&short6), Parsed::Invalid(Invalid::V2ShortAddress));
}

#[test]
fn truncated_v2_header_waits() {
    let mut header = V2_SIGNATURE.to_vec();
    header.extend_from_slice(&[0x21, 0x11, 0xFF, 0xFF]);
    header.extend_from_slice(&[0; 1000]);
    assert_eq!(
        parse(&header),
        Parsed::NeedMore,
        "65535-byte block still arriving"
    );
}
