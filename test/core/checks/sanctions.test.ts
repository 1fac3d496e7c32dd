import { describe, expect, it } from 'vitest';
import { checkSanctions } from '#core/checks/sanctions.ts';

describe('checkSanctions', () => {
  it.each([
    ['Cuba', '5352345678', 'CU', undefined],
    ['Iran', '989121234567', 'IR', undefined],
    ['North Korea', '850212345678', 'KP', undefined],
    ['Syria', '963944123456', 'SY', undefined],
    ['Crimea (Ukrainian area code)', '380652123456', 'UA', 'Crimea'],
    ['Sevastopol (Russian range)', '78692123456', 'RU', 'Crimea'],
    ['Crimea (Russian mobile range)', '79781234567', 'RU', 'Crimea'],
    ['Donetsk', '380622345678', 'UA', 'Donetsk'],
    ['Luhansk', '380642345678', 'UA', 'Luhansk'],
    ['Luhansk (Russian mobile range)', '79591234567', 'RU', 'Luhansk'],
  ])('refuses a caller from %s', (_where, phone, country, region) => {
    expect(checkSanctions({ phone })).toEqual({ sanctioned: true, country, ...(region ? { region } : {}) });
  });

  it.each([
    ['Kyiv', '380441234567', 'UA'],
    ['Moscow', '74951234567', 'RU'],
    ['the US', '13175551399', 'US'],
    ['Brazil', '5511987654321', 'BR'],
  ])('lets a caller from %s through', (_where, phone, country) => {
    expect(checkSanctions({ phone })).toEqual({ sanctioned: false, country });
  });

  it('checks a BSUID-only user by the BSUID country prefix', () => {
    expect(checkSanctions({ userId: 'IR.13491208655302741918' })).toEqual({ sanctioned: true, country: 'IR' });
    expect(checkSanctions({ userId: 'DE.13491208655302741918' })).toEqual({ sanctioned: false, country: 'DE' });
  });

  it('lets through what it cannot place', () => {
    expect(checkSanctions({})).toEqual({ sanctioned: false });
    expect(checkSanctions({ phone: '123' })).toEqual({ sanctioned: false });
  });

  it('uses configured lists', () => {
    expect(checkSanctions({ phone: '13175551399' }, { countries: ['US'] })).toEqual({
      sanctioned: true,
      country: 'US',
    });
  });
});
