/*
 * Shared access signatures, computed in the browser exactly as the server's make_sas does
 * (src/tenant_access/security/sas.py) and as Azure API Management documents them:
 *
 *   SharedAccessSignature uid={uid}&ex={expiry}&sn={base64(HMAC-SHA512(utf8(key), utf8(uid + "\n" + expiry)))}
 *   expiry = .NET round-trip format, yyyy-MM-ddTHH:mm:ss.fffffffZ (UTC, seven fractional digits)
 *
 * The key is used as text (its UTF-8 bytes), not base64-decoded. Computed here rather than asked of
 * the server so that a signature never travels over the wire until its holder uses it.
 * WebCrypto exists only in secure contexts: HTTPS, or plain HTTP on localhost and 127.0.0.1.
 */
"use strict";

(function (global) {
  const UID_FORBIDDEN = /[&= ]/;

  /** A Date as .NET's "O" format in UTC; JavaScript keeps milliseconds, so the last four digits are 0. */
  function formatExpiry(date) {
    if (!(date instanceof Date) || Number.isNaN(date.getTime())) {
      throw new TypeError("the expiry must be a valid Date");
    }
    const year = date.getUTCFullYear();
    if (year < 1 || year > 9999) {
      throw new RangeError("the expiry must be between years 1 and 9999");
    }
    const pad = (n, width) => String(n).padStart(width, "0");
    return pad(year, 4) + "-" + pad(date.getUTCMonth() + 1, 2) + "-" + pad(date.getUTCDate(), 2) +
      "T" + pad(date.getUTCHours(), 2) + ":" + pad(date.getUTCMinutes(), 2) + ":" + pad(date.getUTCSeconds(), 2) +
      "." + pad(date.getUTCMilliseconds(), 3) + "0000Z";
  }

  function checkUid(uid) {
    if (typeof uid !== "string" || uid.length === 0 || uid.length > 256 || UID_FORBIDDEN.test(uid) ||
        /[\u0000-\u001f\u007f]/.test(uid)) {
      throw new RangeError("the identifier must be 1 to 256 printable characters without '&', '=' or spaces");
    }
  }

  function base64(buffer) {
    const bytes = new Uint8Array(buffer);
    let binary = "";
    for (let i = 0; i < bytes.length; i += 1) {
      binary += String.fromCharCode(bytes[i]);
    }
    return btoa(binary);
  }

  function available() {
    return Boolean(global.crypto && global.crypto.subtle);
  }

  /** base64 of HMAC-SHA512 of "{uid}\n{rawExpiry}" under the key's UTF-8 bytes. */
  async function sign(uid, key, rawExpiry) {
    if (!available()) {
      throw new Error("This browser offers no WebCrypto here: open the console over HTTPS or on localhost.");
    }
    const encoder = new TextEncoder();
    const cryptoKey = await global.crypto.subtle.importKey(
      "raw", encoder.encode(key), { name: "HMAC", hash: "SHA-512" }, false, ["sign"]);
    const signature = await global.crypto.subtle.sign("HMAC", cryptoKey, encoder.encode(uid + "\n" + rawExpiry));
    return base64(signature);
  }

  /** The complete Authorization header value, as the portal's "Generate" button shows it. */
  async function makeSas(uid, key, expiry) {
    checkUid(uid);
    if (typeof key !== "string" || key.length === 0) {
      throw new TypeError("the key must be a non-empty string");
    }
    const rawExpiry = formatExpiry(expiry);
    return "SharedAccessSignature uid=" + uid + "&ex=" + rawExpiry + "&sn=" + await sign(uid, key, rawExpiry);
  }

  global.TenantAccessSas = Object.freeze({ formatExpiry, makeSas, sign, available });
}(window));
