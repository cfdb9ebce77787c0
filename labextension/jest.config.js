/**
 * Unit tests of the request layer and the panels' pure logic (ts-jest; jsdom
 * unless a test file asks for node, as the request tests do to run a real
 * HTTP server).
 */
module.exports = {
  testEnvironment: 'jsdom',
  testMatch: ['<rootDir>/src/__tests__/**/*.spec.ts'],
  transform: {
    '^.+\\.tsx?$': ['ts-jest', { tsconfig: '<rootDir>/tsconfig.test.json' }]
  },
  moduleFileExtensions: ['ts', 'tsx', 'js', 'json'],
  testPathIgnorePatterns: ['/node_modules/', '/lib/', '/prebuilt/'],
  modulePathIgnorePatterns: ['<rootDir>/prebuilt/', '<rootDir>/lib/']
};
