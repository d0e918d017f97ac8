/**
 * JSON Schema's string formats, as the grammar writes them: those xgrammar spells out itself, and those it is
 * given as patterns.
 */

/**
 * String formats the grammar spells out (others would be plain strings); those that random walks through
 * xgrammar 0.1.27's own grammars found producing invalid values (minute 60 in a date-time, leading zeros in an
 * IPv4 address, emails a validator refuses) go to it as the patterns of FORMAT_PATTERNS instead.
 */
export const FORMATS = new Set([
  "date",
  "date-time",
  "time",
  "duration",
  "uuid",
  "email",
  "hostname",
  "uri",
  "uri-reference",
  "ipv4",
  "ipv6",
]);

/**
 * A calendar day: 31 only in the months that have it, and February's days to the 28th (the 29th of a leap year is
 * valid, but pydantic refuses it in the other years: an answer is never invalid for keeping to the 28th).
 */
const DAY =
  "(0[13578]|1[02])-(0[1-9]|[12][0-9]|3[01])|(0[469]|11)-(0[1-9]|[12][0-9]|30)|02-(0[1-9]|1[0-9]|2[0-8])";

/** A year as Python's dates hold it: 0001 to 9999 (pydantic refuses year 0). */
const YEAR = "(000[1-9]|00[1-9][0-9]|0[1-9][0-9]{2}|[1-9][0-9]{3})";

/** A number of a duration: four digits at most, so that pydantic's timedelta holds any the pattern writes. */
const AMOUNT = "[0-9]{1,4}";
/**
 * A duration's time part: hours, minutes, seconds, each after the one before, one at least (whole seconds: JSON
 * Schema validators such as ajv's refuse a fraction).
 */
const TIME_PART = `(${AMOUNT}H(${AMOUNT}M)?(${AMOUNT}S)?|${AMOUNT}M(${AMOUNT}S)?|${AMOUNT}S)`;

/** A UUID of a version (pydantic's UUID1 to UUID5 check it), RFC 4122's variant. */
const uuid = (version: number) =>
  `^[0-9a-f]{8}-[0-9a-f]{4}-${version}[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`;

/** What a URI's path, query and fragment hold: RFC 3986's unreserved and sub-delims, ":" and "@" (no escapes). */
const URI_CHARS = "A-Za-z0-9._~!$&'()*+,;=:@/-";

/**
 * A host label of a URL: a letter first, and not "xn--" first (such a label must be valid punycode, which WHATWG
 * parsers check), each of its beginnings a label too (so that every text begun is a URL).
 */
const LABEL =
  "([A-WYZa-wyz][A-Za-z0-9-]*|[xX]([A-MO-Za-mo-z0-9-][A-Za-z0-9-]*|[nN]([A-Za-z0-9][A-Za-z0-9-]*|" +
  "-([A-Za-z0-9][A-Za-z0-9-]*)?)?)?)";

export const FORMAT_PATTERNS: Record<string, string> = {
  date: `^${YEAR}-(${DAY})$`,
  "date-time": `^${YEAR}-(${DAY})T([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9]` +
    "(\\.[0-9]{1,9})?(Z|[+-]([01][0-9]|2[0-3]):[0-5][0-9])$",
  time: "^([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](\\.[0-9]{1,9})?(Z|[+-]([01][0-9]|2[0-3]):[0-5][0-9])$",
  // ISO 8601's, years, months and days, then the time: weeks, which not every reader takes with the rest, left out.
  duration:
    `^P((${AMOUNT}Y(${AMOUNT}M)?(${AMOUNT}D)?|${AMOUNT}M(${AMOUNT}D)?|${AMOUNT}D)(T${TIME_PART})?|T${TIME_PART})$`,
  uuid1: uuid(1),
  uuid3: uuid(3),
  uuid4: uuid(4),
  uuid5: uuid(5),
  // pydantic's Base64Str and Base64Bytes: whole groups of four, the last padded.
  base64: "^([A-Za-z0-9+/]{4})*([A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$",
  ipv4:
    "^((25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])\\.){3}(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])$",
  // Unbounded repeats: bounded ones multiply the grammar's states (4.5 s to compile one email field).
  email: "^[A-Za-z0-9_+-]+(\\.[A-Za-z0-9_+-]+)*@([A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?\\.)+[A-Za-z]{2,16}$",
  // An http(s) URL, what pydantic's HttpUrl and zod's url() also take. Each host label begins with a letter: a
  // last label of digits is read as an IPv4 address by WHATWG parsers (pydantic, `new URL`), and refused if it is
  // none; and none begins "xn--". Past "http://a" every text this begins is a whole URL (a trailing dot, an empty port, a path of any
  // characters are all valid), so the masks can cut it at maxLength anywhere (URI_OPEN).
  uri: `^https?://${LABEL}(\\.${LABEL})*\\.?(:[0-9]{0,4})?(/[${URI_CHARS}]*)?` +
    `(\\?[${URI_CHARS}?]*)?(#[${URI_CHARS}?]*)?$`,
};

/**
 * The length from which every text the uri pattern begins is a match that can also go on: "https://a" (a shorter
 * one may not be: "https://"). Length bounds beside it are kept by the masks when maxLength is at least this.
 */
export const URI_OPEN = 9;

/**
 * pydantic's own formats, as the JSON Schema format all of whose values they take, or none (any string): NameEmail, SecretStr
 * ("password"), bytes ("binary", any string in JSON) and Path; IPvAnyAddress and the network and interface types
 * (a plain address is one of those, as /32 or /128).
 */
export const FORMAT_ALIASES: Record<string, string | undefined> = {
  password: undefined,
  // NameEmail: "Name <address>" or an address alone.
  "name-email": "email",
  binary: undefined,
  path: undefined,
  ipvanyaddress: "ipv4",
  ipvanyinterface: "ipv4",
  ipvanynetwork: "ipv4",
  ipv4interface: "ipv4",
  ipv4network: "ipv4",
  ipv6interface: "ipv6",
  ipv6network: "ipv6",
};

/** The format a pattern spells, if it is one of FORMAT_PATTERNS. */
export function formatOf(pattern: unknown): string | undefined {
  return Object.entries(FORMAT_PATTERNS).find(([, p]) => p === pattern)?.[0];
}
