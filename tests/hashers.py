"""The password hasher of the suite's own process: PBKDF2 at one iteration.

Django's PBKDF2 runs 1,000,000 iterations, ~0.3 s a password on the CI machine,
and the suite makes and checks passwords in hundreds of tests. A hash made here
names its iteration count (`pbkdf2_sha256$1$...`), so the server processes a
test starts, which keep Django's hasher, verify it as quickly (and upgrade it
to their own count when they log its user in).
"""

from django.contrib.auth.hashers import PBKDF2PasswordHasher


class QuickPBKDF2PasswordHasher(PBKDF2PasswordHasher):
    iterations = 1
