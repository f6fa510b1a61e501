"""Message authentication on receipt: SPF, DKIM, DMARC, ARC, and the Authentication-Results
header recording them. Every DNS question goes through our `Resolver`."""
