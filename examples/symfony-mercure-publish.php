<?php
// Publishes to Herald with Symfony's Mercure component, unchanged: Herald is the hub.
//
//   MERCURE_URL=http://127.0.0.1:3000/.well-known/mercure MERCURE_JWT=<token> php examples/symfony-mercure-publish.php
//
// MERCURE_JWT is a publisher token signed with Herald's PUBLISHER_JWT_KEY (Symfony apps usually
// build it from MERCURE_JWT_SECRET; a static token keeps this example free of a JWT library).
// Prints the ids Herald answered, as JSON. Debian: apt-get install php-cli php-symfony-mercure.

require_once 'Symfony/Component/Mercure/autoload.php';

use Symfony\Component\Mercure\Hub;
use Symfony\Component\Mercure\Jwt\StaticTokenProvider;
use Symfony\Component\Mercure\Update;

$hub = new Hub(getenv('MERCURE_URL'), new StaticTokenProvider(getenv('MERCURE_JWT')));

$ids = [
    // A public update on two topics: the first is canonical, the second an alternate.
    'public' => $hub->publish(new Update(
        ['https://example.com/books/1', 'https://example.com/authors/7'],
        json_encode(['title' => 'Dune', 'status' => 'in stock']),
        false,
        'book-1-v2',
        'book.updated',
        5000,
    )),
    // A private update: only subscribers whose token's mercure.subscribe covers one of its topics get it.
    'private' => $hub->publish(new Update(
        ['https://example.com/users/7/inbox', 'https://example.com/books/1'],
        json_encode(['message' => 'your order shipped']),
        true,
    )),
];
echo json_encode($ids), "\n";
