// Tests are compiled by `npm run build` and run as plain JS from dist/.
module.exports = {
  projects: [
    { displayName: 'unit', testEnvironment: 'node', roots: ['<rootDir>/dist/test/unit'] },
    { displayName: 'integration', testEnvironment: 'node', roots: ['<rootDir>/dist/test/integration'],
      globalSetup: '<rootDir>/dist/test/support/global-setup.js',
      globalTeardown: '<rootDir>/dist/test/support/global-teardown.js' },
    // Hostile tasks and requests against real nodes (see test/security/).
    { displayName: 'security', testEnvironment: 'node', roots: ['<rootDir>/dist/test/security'],
      globalSetup: '<rootDir>/dist/test/support/global-setup.js',
      globalTeardown: '<rootDir>/dist/test/support/global-teardown.js' },
    { displayName: 'e2e', testEnvironment: 'node', roots: ['<rootDir>/dist/test/e2e'],
      globalSetup: '<rootDir>/dist/test/support/global-setup.js',
      globalTeardown: '<rootDir>/dist/test/support/global-teardown.js' },
  ],
};
