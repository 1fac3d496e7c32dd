/**
 * Sanctioned countries and regions: Meta offers no WhatsApp Business Platform service to or from
 * Cuba, Iran, North Korea, Syria, and the Ukrainian regions Crimea, Donetsk and Luhansk
 * (meta-calling-api.md §4.4). Countries come from libphonenumber-js; the regions have no country
 * code of their own, so they are matched by number prefixes (Ukrainian area codes and the Russian
 * ranges issued there), and a BSUID-only user is matched by the country prefix of the BSUID.
 */
import { parsePhoneNumberFromString } from 'libphonenumber-js/max';

/** ISO 3166-1 alpha-2 codes of sanctioned countries. */
export const SANCTIONED_COUNTRIES: readonly string[] = ['CU', 'IR', 'KP', 'SY'];

/**
 * E.164 prefixes (digits, no `+`) of sanctioned regions, with the region each names.
 * Ukrainian area codes: Crimea 65, Sevastopol 692, Donetsk oblast 62, Luhansk oblast 64; mobile
 * ranges operated in the occupied areas: +380 71 (Donetsk), +380 72 (Luhansk); Russian ranges
 * issued there: +7 978 and +7 365 (Crimea), +7 869 (Sevastopol), +7 949 (Donetsk), +7 959 (Luhansk).
 */
export const SANCTIONED_PREFIXES: ReadonlyArray<{ prefix: string; region: string }> = [
  { prefix: '38065', region: 'Crimea' },
  { prefix: '380692', region: 'Crimea' },
  { prefix: '7978', region: 'Crimea' },
  { prefix: '7365', region: 'Crimea' },
  { prefix: '7869', region: 'Crimea' },
  { prefix: '38062', region: 'Donetsk' },
  { prefix: '38071', region: 'Donetsk' },
  { prefix: '7949', region: 'Donetsk' },
  { prefix: '38064', region: 'Luhansk' },
  { prefix: '38072', region: 'Luhansk' },
  { prefix: '7959', region: 'Luhansk' },
];

/** Outcome of a sanctions check. */
export type SanctionsVerdict =
  | { sanctioned: false; country?: string }
  | { sanctioned: true; country: string; region?: string };

/** Lists to check against; defaults are the lists above. */
export interface SanctionsLists {
  readonly countries?: readonly string[];
  readonly prefixes?: ReadonlyArray<{ prefix: string; region: string }>;
}

/**
 * Checks a WhatsApp party (phone digits and/or BSUID) against the sanctions lists.
 *
 * @param party - `phone` as digits without `+` (Meta's form), `userId` a BSUID like `IR.1234…`.
 */
export function checkSanctions(
  party: { phone?: string; userId?: string },
  lists: SanctionsLists = {},
): SanctionsVerdict {
  const countries = lists.countries ?? SANCTIONED_COUNTRIES;
  const prefixes = lists.prefixes ?? SANCTIONED_PREFIXES;
  const phone = party.phone?.replace(/\D/g, '');
  if (phone) {
    const region = prefixes.find((p) => phone.startsWith(p.prefix));
    const country = parsePhoneNumberFromString(`+${phone}`)?.country;
    if (region) return { sanctioned: true, country: country ?? 'UA', region: region.region };
    if (country && countries.includes(country)) return { sanctioned: true, country };
    if (country) return { sanctioned: false, country };
  }
  // A BSUID starts with the user's ISO country code: `US.13491208655302741918` (§2.6).
  const bsuidCountry = /^([A-Z]{2})\./.exec(party.userId ?? '')?.[1];
  if (bsuidCountry && countries.includes(bsuidCountry)) return { sanctioned: true, country: bsuidCountry };
  return bsuidCountry ? { sanctioned: false, country: bsuidCountry } : { sanctioned: false };
}
